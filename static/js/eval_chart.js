// The suite page's chart: one line per metric (completion, tool accuracy, self-healing, block
// rate, utility) over the suite's finished eval runs, from {{ chart|json_script:"eval-chart" }}.
(function () {
  "use strict";
  const source = document.getElementById("eval-chart");
  const canvas = document.querySelector("canvas[data-eval-chart]");
  if (!source || !canvas || typeof Chart === "undefined") return;
  const data = JSON.parse(source.textContent);
  const colours = ["#2f5bea", "#1a7f37", "#9a6700", "#cf222e", "#8250df"];
  const names = { completion: "completion", tool_accuracy: "tool-call accuracy", self_healing: "self-healing",
                  block_rate: "block rate", utility: "utility" };
  const datasets = Object.keys(data.series).map(function (key, i) {
    return { label: names[key] || key, data: data.series[key].map(function (v) { return v === null ? null : v * 100; }),
             borderColor: colours[i % colours.length], backgroundColor: colours[i % colours.length], spanGaps: true };
  });
  canvas.parentElement.style.height = "260px";
  new Chart(canvas, {
    type: "line",
    data: { labels: data.labels, datasets: datasets },
    options: { responsive: true, maintainAspectRatio: false, animation: false,
               plugins: { legend: { position: "bottom" } },
               scales: { y: { min: 0, max: 100, title: { display: true, text: "%" } } } },
  });
})();
