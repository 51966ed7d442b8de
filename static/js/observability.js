// Observability charts from {{ data|json_script:"observability-data" }} (Chart.js, vendored).
(function () {
  "use strict";
  const source = document.getElementById("observability-data");
  if (!source || typeof Chart === "undefined") return;
  const data = JSON.parse(source.textContent);
  const palette = ["#2f5bea", "#1a7f37", "#9a6700", "#cf222e", "#8250df", "#0969da", "#bf3989", "#57606a"];
  const base = { responsive: true, maintainAspectRatio: false, animation: false,
                 plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
                 scales: { y: { beginAtZero: true } } };
  const days = data.days.map(function (d) { return d.slice(5); });
  function latency(series) {
    return { type: "bar", data: { labels: series.labels, datasets: [
      { label: "p50", data: series.p50, backgroundColor: palette[0] },
      { label: "p95", data: series.p95, backgroundColor: palette[2] }] }, options: base };
  }
  function stacked(series) {
    return { type: "bar", data: { labels: days, datasets: series.map(function (s, i) {
      return { label: s.label, data: s.data, backgroundColor: palette[i % palette.length] }; }) },
      options: Object.assign({}, base, { scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true } } }) };
  }
  const builders = {
    error_rate: function () {
      return { type: "line", data: { labels: days, datasets: [{ label: "error rate %", data: data.error_rate,
        borderColor: palette[3], backgroundColor: palette[3], spanGaps: true }] }, options: base };
    },
    step_latency: function () { return latency(data.step_latency); },
    review_wait: function () { return latency(data.review_wait); },
    tool_latency: function () { return latency(data.tool_latency); },
    model_latency: function () { return latency(data.model_latency); },
    cost_by_agent: function () { return stacked(data.cost_by_agent); },
    cost_by_pipeline: function () { return stacked(data.cost_by_pipeline); },
  };
  document.querySelectorAll("canvas[data-obs]").forEach(function (canvas) {
    const build = builders[canvas.dataset.obs];
    if (build) new Chart(canvas, build());
  });
})();
