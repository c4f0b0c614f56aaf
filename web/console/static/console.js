// Portcullis console: draws the charts that pages describe in data-chart (JSON:
// title, unit, x as unix seconds, series of label and values) with uPlot. Every
// chart's numbers are also in a table on its page, so nothing is lost without JS.
(function () {
  "use strict";
  var palette = ["#0a56c2", "#1a7f37", "#9a6700", "#b42318", "#8250df", "#bf3989", "#0969da", "#57606a"];

  function draw(el) {
    if (el.dataset.drawn) {
      return;
    }
    el.dataset.drawn = "1";
    var spec = JSON.parse(el.dataset.chart);
    if (!spec.series || spec.series.length === 0) {
      var none = document.createElement("p");
      none.className = "muted";
      none.textContent = "No data in this range.";
      el.appendChild(none);
      return;
    }
    var data = [spec.x].concat(spec.series.map(function (s) { return s.values; }));
    var series = [{}].concat(spec.series.map(function (s, i) {
      return { label: s.label, stroke: palette[i % palette.length], width: 2, points: { show: false } };
    }));
    var css = getComputedStyle(document.documentElement);
    var muted = css.getPropertyValue("--muted").trim();
    var line = css.getPropertyValue("--line").trim();
    var axis = { stroke: muted, grid: { stroke: line, width: 1 }, ticks: { stroke: line, width: 1 } };
    var width = Math.max(280, Math.min(el.clientWidth || 640, 960));
    /* global uPlot */
    new uPlot({
      width: width,
      height: 220,
      series: series,
      scales: { x: { time: true } },
      axes: [axis, { stroke: muted, grid: axis.grid, ticks: axis.ticks, size: 70, label: spec.unit }],
    }, data, el);
  }

  function drawAll(root) {
    root.querySelectorAll("[data-chart]").forEach(draw);
  }

  document.addEventListener("DOMContentLoaded", function () { drawAll(document); });
  document.addEventListener("htmx:afterSettle", function (e) { drawAll(e.target); });
})();
