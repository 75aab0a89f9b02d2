// The overview's charts (uPlot), drawn from /dashboard/charts and redrawn every 30 s.
// No inline script anywhere: the CSP allows scripts from 'self' only.
(function () {
  "use strict";
  var REFRESH_MS = 30000;
  var plots = {};

  function options(kind, width) {
    var base = { width: width, height: 200, scales: { x: { time: true } }, legend: { live: false } };
    if (kind === "counts") {
      base.series = [{}, { label: "sent", stroke: "#1f77b4" },
        { label: "delivered", stroke: "#2ca02c" }, { label: "failed", stroke: "#d62728" }];
    } else if (kind === "rate") {
      base.series = [{}, { label: "delivery rate", stroke: "#2ca02c" }];
      base.scales.y = { range: [0, 1] };
    } else {
      base.series = [{}, { label: "p50", stroke: "#1f77b4" }, { label: "p95", stroke: "#ff7f0e" }];
    }
    return base;
  }

  function columns(kind, data) {
    if (kind === "counts") { return [data.t, data.sent, data.delivered, data.failed]; }
    if (kind === "rate") { return [data.t, data.rate]; }
    return [data.t, data.p50, data.p95];
  }

  function draw(data) {
    document.querySelectorAll("[data-chart]").forEach(function (element) {
      var kind = element.getAttribute("data-chart");
      var values = columns(kind, data);
      if (plots[kind]) {
        plots[kind].setData(values);
        return;
      }
      var width = Math.max(element.clientWidth, 280);
      plots[kind] = new uPlot(options(kind, width), values, element);
    });
    document.getElementById("charts").setAttribute("data-drawn", String(data.t.length));
  }

  function load() {
    var holder = document.getElementById("charts");
    if (!holder || typeof uPlot === "undefined") { return; }
    fetch(holder.getAttribute("data-url"), { credentials: "same-origin" })
      .then(function (answer) { return answer.ok ? answer.json() : null; })
      .then(function (data) { if (data) { draw(data); } });
  }

  document.addEventListener("DOMContentLoaded", function () {
    load();
    window.setInterval(load, REFRESH_MS);
  });
})();
