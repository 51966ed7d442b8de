// Usage charts: reads the page's {{ data|json_script:"usage-data" }} and draws every
// <canvas data-chart="tokens|cost|runs|errors"> on it with Chart.js (vendored UMD build).
(function () {
  "use strict";
  const PALETTE = ["#2f5bea", "#1a7f37", "#9a6700", "#cf222e", "#8250df", "#0969da", "#bf3989", "#57606a",
                   "#116329", "#953800"];
  const STATUS_COLOURS = { succeeded: "#1a7f37", failed: "#cf222e", cancelled: "#8c959f", waiting_review: "#9a6700",
                           running: "#0969da", queued: "#57606a" };

  function shortDay(iso) {
    return iso.slice(5); // MM-DD
  }

  function base(stacked, yTitle) {
    return {
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      interaction: { mode: "index", intersect: false },
      plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
      scales: {
        x: { stacked: stacked, ticks: { maxRotation: 0, autoSkipPadding: 12 } },
        y: { stacked: stacked, beginAtZero: true, title: { display: !!yTitle, text: yTitle || "" } },
      },
    };
  }

  function whole(options) {
    options.scales.y.ticks = { precision: 0 };
    return options;
  }

  const builders = {
    tokens(data) {
      return {
        type: "bar",
        data: {
          labels: data.days.map(shortDay),
          datasets: [
            { label: "input tokens", data: data.tokens.input, backgroundColor: PALETTE[0] },
            { label: "output tokens", data: data.tokens.output, backgroundColor: PALETTE[4] },
          ],
        },
        options: whole(base(true, "tokens")),
      };
    },
    cost(data) {
      const options = base(true, "USD");
      options.plugins.tooltip = { callbacks: { label: (c) => `${c.dataset.label}: $${Number(c.raw).toFixed(4)}` } };
      return {
        type: "bar",
        data: {
          labels: data.days.map(shortDay),
          datasets: data.cost_by_agent.map((series, i) => ({
            label: series.label, data: series.data, backgroundColor: PALETTE[i % PALETTE.length],
          })),
        },
        options: options,
      };
    },
    runs(data) {
      return {
        type: "bar",
        data: {
          labels: data.days.map(shortDay),
          datasets: (data.runs_by_status || []).map((series, i) => ({
            label: series.label.replace("_", " "), data: series.data,
            backgroundColor: STATUS_COLOURS[series.label] || PALETTE[i % PALETTE.length],
          })),
        },
        options: whole(base(true, "runs")),
      };
    },
    errors(data) {
      const options = base(false, "% failed");
      options.scales.y.suggestedMax = 100;
      options.plugins.tooltip = { callbacks: { label: (c) => (c.raw === null ? "no runs" : `${c.raw}% failed`) } };
      return {
        type: "line",
        data: {
          labels: data.days.map(shortDay),
          datasets: [{
            label: "error rate", data: data.error_rate || [], borderColor: STATUS_COLOURS.failed,
            backgroundColor: "rgba(207, 34, 46, 0.12)", fill: true, spanGaps: true, tension: 0.2, pointRadius: 3,
          }],
        },
        options: options,
      };
    },
  };

  function draw() {
    const source = document.getElementById("usage-data");
    if (!source || typeof Chart === "undefined") return;
    const data = JSON.parse(source.textContent);
    document.querySelectorAll("canvas[data-chart]").forEach((canvas) => {
      const build = builders[canvas.dataset.chart];
      if (!build || Chart.getChart(canvas)) return;
      new Chart(canvas, build(data));
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
