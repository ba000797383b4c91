// strand console: small enhancements over the server-rendered pages.
// The lag chart draws a group's total lag over time: the broker's history
// (window.lagHistory, from the page), refreshed every 5 s from
// /api/groups/NAME (which also records a sample) and its lag-history.
(function () {
  "use strict";
  var chart = document.getElementById("lag-chart");
  if (!chart) return;
  var group = chart.getAttribute("data-group");
  var svg = chart.querySelector("svg");
  var samples = window.lagHistory || [];
  var ns = "http://www.w3.org/2000/svg";

  function draw() {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    if (samples.length === 0) return;
    var lags = samples.map(function (s) { return s.lag; });
    var max = Math.max.apply(null, lags.concat([1]));
    var t0 = samples[0].at, span = Math.max(samples[samples.length - 1].at - t0, 1);
    var pts = samples.map(function (s) {
      var x = samples.length === 1 ? 300 : (s.at - t0) * 600 / span;
      return x.toFixed(1) + "," + (115 - s.lag * 105 / max).toFixed(1);
    }).join(" ");
    var line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", pts);
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", "#2456c8");
    line.setAttribute("stroke-width", "2");
    svg.appendChild(line);
    var label = document.createElementNS(ns, "text");
    label.setAttribute("x", "4");
    label.setAttribute("y", "14");
    label.setAttribute("font-size", "12");
    label.textContent = "max " + max + ", now " + lags[lags.length - 1] + " (" + samples.length + " samples)";
    svg.appendChild(label);
  }

  function refresh() {
    var base = "/api/groups/" + encodeURIComponent(group);
    fetch(base)
      .then(function (r) { return r.json(); })
      .then(function (g) {
        if (typeof g.total_lag === "number") document.getElementById("total-lag").textContent = g.total_lag;
        return fetch(base + "/lag-history");
      })
      .then(function (r) { return r.json(); })
      .then(function (h) { if (Array.isArray(h)) { samples = h; draw(); } })
      .catch(function () {});
  }

  draw();
  setInterval(refresh, 5000);
})();
