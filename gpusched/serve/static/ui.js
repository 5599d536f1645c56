// The gpusched floor map: draws /v1/floor/layout once as inline SVG, then polls
// /v1/floor?since=SEQ and recolours the racks when the service's state changes.
// Plain JavaScript, no library: the page must work on a site with no internet access.
"use strict";

(function () {
  var POLL_MS = 1000;
  var SVG = "http://www.w3.org/2000/svg";
  // Headroom bins (ColorBrewer YlOrRd, colour-blind safe) for racks with busy GPUs;
  // idle racks are pale blue so an idle rack never looks like a busy one with room.
  var IDLE = "#c6dbef";
  var OVER = "#000000";
  var BINS = [  // [lowest headroom in the bin (fraction), colour, label]
    [0.50, "#fed976", "≥ 50 %"],
    [0.25, "#feb24c", "25–50 %"],
    [0.10, "#fd8d3c", "10–25 %"],
    [0.03, "#f03b20", "3–10 %"],
    [0.00, "#bd0026", "< 3 %"]
  ];
  var JOBS_SHOWN = 300;
  var FULL = 0.03;          // a hall or site limit this close to full frames its halls
  var FRAME = "#bd0026";

  var layout = null, live = null, seq = null;
  var rackEls = [], busyEls = [], notUpEls = [];
  var rackJobs = [];        // rack index -> job indexes in live.jobs
  var pinned = null;        // {kind: "job"|"rack", key: ...}
  var svg = document.getElementById("floor");

  function el(tag, attrs, parent) {
    var e = document.createElementNS(SVG, tag);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }
  function colour(headroom, busy) {
    if (headroom < 0) return OVER;
    if (busy === 0) return IDLE;
    for (var i = 0; i < BINS.length; i++) if (headroom >= BINS[i][0]) return BINS[i][1];
    return BINS[BINS.length - 1][1];
  }
  function power(w) {
    if (Math.abs(w) >= 1e6) return (w / 1e6).toFixed(w >= 1e7 ? 1 : 2) + " MW";
    if (Math.abs(w) >= 1e3) return (w / 1e3).toFixed(1) + " kW";
    return Math.round(w) + " W";
  }
  function pct(x) { return (100 * x).toFixed(x < 0.1 && x > -0.1 ? 1 : 0) + " %"; }
  function esc(s) {
    return String(s).replace(/[&<>"]/g, function (c) {
      return {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;"}[c];
    });
  }

  // ---- legend -----------------------------------------------------------------------

  function drawLegend() {
    var parts = ["<b>rack headroom</b> (tightest of its own limits):",
                 "<span><i class='swatch' style='background:" + IDLE + "'></i>idle</span>"];
    BINS.forEach(function (b) {
      parts.push("<span><i class='swatch' style='background:" + b[1] + "'></i>" + b[2] + "</span>");
    });
    parts.push("<span><i class='swatch' style='background:" + OVER + "'></i>over a limit</span>");
    parts.push("<span><svg width='14' height='12'><rect width='12' height='12' x='1' fill='#fff' stroke='#777'/>" +
               "<rect width='12' height='3' x='1' y='9' fill='#222'/></svg>busy GPUs (bar)</span>");
    parts.push("<span><svg width='14' height='12'><rect width='12' height='12' x='1' fill='url(#hatch)' stroke='#777'/></svg>" +
               "nodes draining or down</span>");
    parts.push("<span><i class='swatch' style='background:#fff;border:3px solid #1f5fbf;width:8px;height:8px'></i>" +
               "racks of the job or rack you point at</span>");
    parts.push("<span><i class='swatch' style='background:#fff;border:3px solid " + FRAME + ";width:8px;height:8px'></i>" +
               "hall frame: a hall or site limit is within " + (100 * FULL) + " % of full; whatever its racks show, the hall has little or no power left</span>");
    document.getElementById("legend").innerHTML = parts.join(" ");
  }

  // ---- the map (once) ---------------------------------------------------------------

  function drawMap() {
    var racks = layout.racks, nRacks = racks.name.length;
    var halls = layout.halls.map(function (name, h) { return {name: name, rows: []}; });
    var rowRacks = layout.rows.map(function () { return []; });
    for (var r = 0; r < nRacks; r++) rowRacks[racks.row[r]].push(r);
    layout.rows.forEach(function (row, i) {
      var h = row.hall >= 0 ? row.hall : racks.hall[rowRacks[i][0] || 0];
      if (rowRacks[i].length) halls[h].rows.push(i);
    });
    var width = Math.max(320, document.getElementById("map").clientWidth - 16);
    var cols = 1, depth = 1;
    halls.forEach(function (h) {
      cols = Math.max(cols, h.rows.length);
      h.rows.forEach(function (i) { depth = Math.max(depth, rowRacks[i].length); });
    });
    var left = 34, gap = cols > 40 ? 1 : 4;
    var cw = Math.max(4, Math.min(72, Math.floor((width - left - 8) / cols) - gap));
    var ch = Math.max(6, Math.min(36, Math.round(cw * 1.4)));
    var labelled = cw >= 44;          // room for rack names inside the cells
    svg.innerHTML = "";
    var defs = el("defs", {}, svg);
    var pat = el("pattern", {id: "hatch", width: 4, height: 4, patternUnits: "userSpaceOnUse",
                             patternTransform: "rotate(45)"}, defs);
    el("rect", {width: 4, height: 4, fill: "rgba(255,255,255,0.35)"}, pat);
    el("line", {x1: 0, y1: 0, x2: 0, y2: 4, stroke: "#000", "stroke-width": 2}, pat);
    var y = 0;
    rackEls = new Array(nRacks); busyEls = new Array(nRacks); notUpEls = new Array(nRacks);
    // the wide limits of each hall, one text line each when one line would not fit
    var hallLimits = layout.halls.map(function () { return 0; }), siteWide = 0;
    layout.wide_limits.forEach(function (lim) { if (lim.hall >= 0) hallLimits[lim.hall]++; else siteWide++; });
    halls.forEach(function (hall, h) {
      var g = el("g", {"class": "hall", "data-hall": h, transform: "translate(0," + y + ")"}, svg);
      var title = el("text", {x: 0, y: 13, "class": "hall-title"}, g);
      title.textContent = hall.name;
      var x0 = 8 * hall.name.length + 10;
      var lines = hallLimits[h] * 52 * 6.2 > width - x0 ? hallLimits[h] : (hallLimits[h] ? 1 : 0);
      for (var line = 0; line < Math.max(1, lines); line++)
        el("text", {x: x0, y: 13 + 14 * line, "class": "hall-limits", "data-hall": h, "data-line": line}, g);
      var top = 8 + 14 * Math.max(1, lines);
      hall.rows.forEach(function (rowIndex, c) {
        var x = left + c * (cw + gap);
        rowRacks[rowIndex].forEach(function (r, k) {
          var ry = top + k * (ch + (labelled ? 3 : 1));
          var rect = el("rect", {x: x, y: ry, width: cw, height: ch, "class": "rack",
                                 "data-rack": r, fill: IDLE}, g);
          rackEls[r] = rect;
          busyEls[r] = el("rect", {x: x, y: ry + ch - Math.max(2, ch / 5), width: 0,
                                   height: Math.max(2, ch / 5), "class": "busybar"}, g);
          notUpEls[r] = el("rect", {x: x, y: ry, width: cw, height: ch, "class": "notup",
                                    visibility: "hidden"}, g);
          if (labelled) {
            var t = el("text", {x: x + 3, y: ry + 12, "pointer-events": "none"}, g);
            t.textContent = racks.name[r];
          }
        });
        // row labels: each one when there is room, else every tenth
        var every = cw >= 24 ? 1 : (cw >= 10 ? 5 : 10);
        if (c % every === 0) {
          var lab = el("text", {x: x, y: top + depth * (ch + (labelled ? 3 : 1)) + 11}, g);
          lab.textContent = every === 1 ? layout.rows[rowIndex].name : String(c + 1);
        }
      });
      var yl = el("text", {x: 0, y: top + 10, "font-size": 10}, g);
      yl.textContent = "racks";
      var gridW = hall.rows.length * (cw + gap) - gap + 6, gridH = depth * (ch + (labelled ? 3 : 1)) + 5;
      el("rect", {x: left - 3, y: top - 3, width: gridW, height: gridH, fill: "none", stroke: FRAME,
                  "stroke-width": 3, "class": "hall-frame", "data-hall": h, visibility: "hidden"}, g);
      y += top + depth * (ch + (labelled ? 3 : 1)) + 24;
    });
    el("text", {x: left, y: y - 4, "font-size": 10, fill: "#555"}, svg).textContent =
      cw >= 24 ? "" : "columns: power rows of the hall (numbered from 1), cells: racks";
    svg.setAttribute("viewBox", "0 0 " + width + " " + (y + 4));
    svg.setAttribute("height", y + 4);
    svg.addEventListener("mousemove", onHover);
    svg.addEventListener("mouseleave", function () { tooltip(null); if (!pinned) highlight(null); });
    svg.addEventListener("click", onClick);
  }

  // ---- live updates -----------------------------------------------------------------

  function limitBar(name, load, limit) {
    var used = limit > 0 ? load / limit : 0;
    var c = used > 1 ? OVER : colour(1 - used, 1);
    return "<span class='limit' title='" + esc(name) + "'>" + esc(name) + " <span class='bar'><i style='width:" +
      Math.min(100, 100 * used).toFixed(1) + "%;background:" + c + "'></i></span> " +
      power(load) + " / " + power(limit) + " (" + pct(used) + ")</span>";
  }

  function apply(view) {
    live = view; seq = view.seq;
    var racks = layout.racks, n = racks.name.length, v = view.racks;
    for (var r = 0; r < n; r++) {
      var head = v.headroom[r] / 1000, busy = v.busy[r];
      var rect = rackEls[r];
      rect.setAttribute("fill", colour(head, busy));
      rect.setAttribute("data-busy", busy);
      rect.classList.toggle("over", head < 0);
      busyEls[r].setAttribute("width", (rect.width.baseVal.value * busy / racks.gpus[r]).toFixed(2));
      notUpEls[r].setAttribute("visibility", v.nodes_not_up[r] > 0 ? "visible" : "hidden");
    }
    rackJobs = new Array(n);
    for (r = 0; r < n; r++) rackJobs[r] = [];
    view.jobs.forEach(function (job, j) { job[3].forEach(function (r) { rackJobs[r].push(j); }); });
    // the limits wider than a power row: per hall in the hall's title, the rest on top
    var perHall = layout.halls.map(function () { return []; }), site = [];
    layout.wide_limits.forEach(function (lim, i) {
      var load = view.wide_limits[i].load_w;
      (lim.hall >= 0 ? perHall[lim.hall] : site).push([lim, load]);
    });
    document.getElementById("site-limits").innerHTML = site.map(function (p) {
      return limitBar(p[0].name, p[1], p[0].limit_w);
    }).join("");
    var siteFull = site.some(function (p) { return p[1] >= (1 - FULL) * p[0].limit_w; });
    perHall.forEach(function (list, h) {
      var texts = svg.querySelectorAll("text.hall-limits[data-hall='" + h + "']");
      if (!texts.length) return;
      var hallName = layout.halls[h];
      var parts = list.map(function (p) {
        var used = p[1] / p[0].limit_w, name = p[0].name;
        // "hall-1 switchboard" under the title "hall-1" reads as "switchboard"
        if (name.indexOf(hallName + " ") === 0) name = name.slice(hallName.length + 1);
        return name + " " + power(p[1]) + " / " + power(p[0].limit_w) + " (" + pct(used) + ")" +
          (used > 1 ? " OVER" : (used >= 1 - FULL ? " FULL" : ""));
      });
      for (var i = 0; i < texts.length; i++) {
        texts[i].textContent = texts.length === 1 ? parts.join("  ·  ") : (parts[i] || "");
        var p = list[texts.length === 1 ? 0 : i];
        var tight = texts.length === 1 ? list.some(function (q) { return q[1] >= (1 - FULL) * q[0].limit_w; })
                                       : !!p && p[1] >= (1 - FULL) * p[0].limit_w;
        texts[i].setAttribute("fill", tight ? FRAME : "#222");
        texts[i].setAttribute("font-weight", tight ? "bold" : "normal");
      }
      var full = siteFull || list.some(function (q) { return q[1] >= (1 - FULL) * q[0].limit_w; });
      var frame = svg.querySelector("rect.hall-frame[data-hall='" + h + "']");
      if (frame) frame.setAttribute("visibility", full ? "visible" : "hidden");
      svg.querySelector("g.hall[data-hall='" + h + "']").setAttribute("data-full", full ? "1" : "0");
    });
    var ns = view.node_states, notUp = (ns.draining || 0) + (ns.down || 0);
    document.getElementById("summary").textContent =
      view.busy_gpus.toLocaleString("en") + " / " + layout.gpus.toLocaleString("en") + " GPUs busy · " +
      view.jobs.length.toLocaleString("en") + (view.jobs.length === 1 ? " job · " : " jobs · ") + power(view.power_w) + " held · nodes: " +
      (notUp === 0 ? "all up" : (ns.up + " up, " + (ns.draining || 0) + " draining, " + (ns.down || 0) + " down"));
    drawJobs();
    if (pinned) highlight(pinned); else highlight(null);
  }

  function drawJobs() {
    var filter = document.getElementById("job-filter").value.trim().toLowerCase();
    var jobs = live.jobs.map(function (job, j) { return j; }).filter(function (j) {
      return !filter || live.jobs[j][0].toLowerCase().indexOf(filter) >= 0;
    });
    jobs.sort(function (a, b) { return live.jobs[b][1] - live.jobs[a][1] || (live.jobs[a][0] < live.jobs[b][0] ? -1 : 1); });
    document.getElementById("job-count").textContent = "(" + live.jobs.length.toLocaleString("en") + ")";
    var html = jobs.slice(0, JOBS_SHOWN).map(function (j) {
      var job = live.jobs[j];
      var on = pinned && pinned.kind === "job" && pinned.key === job[0] ? " class='on'" : "";
      return "<li data-job='" + esc(job[0]) + "'" + on + ">" + esc(job[0]) + " · " + job[1] + " GPUs · " +
        job[2] + " W · " + job[3].length + " rack" + (job[3].length === 1 ? "" : "s") + "</li>";
    });
    if (jobs.length > JOBS_SHOWN) html.push("<li class='more'>" + (jobs.length - JOBS_SHOWN) + " smaller jobs not listed; filter by id</li>");
    document.getElementById("jobs-list").innerHTML = html.join("");
  }

  // ---- highlight, hover, click ------------------------------------------------------

  function jobIndex(id) {
    for (var j = 0; j < live.jobs.length; j++) if (live.jobs[j][0] === id) return j;
    return -1;
  }
  function racksOf(sel) {
    if (!sel || !live) return null;
    if (sel.kind === "rack") {
      var set = {}; set[sel.key] = true;
      rackJobs[sel.key].forEach(function (j) { live.jobs[j][3].forEach(function (r) { set[r] = true; }); });
      return Object.keys(set).map(Number);
    }
    var j = jobIndex(sel.key);
    return j < 0 ? [] : live.jobs[j][3];
  }
  var lit = [];
  function highlight(sel) {
    lit.forEach(function (r) { rackEls[r].classList.remove("hl"); });
    lit = racksOf(sel) || [];
    lit.forEach(function (r) { rackEls[r].classList.add("hl"); });
    var items = document.querySelectorAll("#jobs-list li[data-job]");
    for (var i = 0; i < items.length; i++)
      items[i].classList.toggle("on", !!sel && sel.kind === "job" && items[i].getAttribute("data-job") === sel.key);
    showDetail(sel);
  }
  function rackText(r) {
    var racks = layout.racks, v = live.racks;
    var jobs = rackJobs[r].map(function (j) { return live.jobs[j][0]; });
    return "<b>" + esc(racks.name[r]) + "</b> · " + esc(layout.halls[racks.hall[r]]) + " · " +
      esc(layout.rows[racks.row[r]].name) + " · " + racks.kind[r] + "<br>" +
      v.busy[r] + " / " + racks.gpus[r] + " GPUs busy · " + power(v.power_w[r]) + "<br>" +
      "headroom " + pct(v.headroom[r] / 1000) + (v.binding[r] ? " (tightest: " + esc(v.binding[r]) + ")" : "") +
      (v.nodes_not_up[r] ? "<br>" + v.nodes_not_up[r] + " node(s) draining or down" : "") +
      "<br>jobs: " + (jobs.length ? esc(jobs.slice(0, 8).join(", ")) + (jobs.length > 8 ? " and " + (jobs.length - 8) + " more" : "") : "none");
  }
  function showDetail(sel) {
    var d = document.getElementById("detail");
    if (!sel || !live) { d.innerHTML = "<p class='hint'>Hover a rack for its numbers; click a rack or a job to hold the highlight.</p>"; return; }
    if (sel.kind === "rack") { d.innerHTML = rackText(sel.key); return; }
    var j = jobIndex(sel.key);
    if (j < 0) { d.innerHTML = "<p>job " + esc(sel.key) + " is no longer placed</p>"; return; }
    var job = live.jobs[j];
    d.innerHTML = "<b>" + esc(job[0]) + "</b><br>" + job[1] + " GPUs at " + job[2] + " W on " + job[3].length +
      " rack(s): " + esc(job[3].slice(0, 6).map(function (r) { return layout.racks.name[r]; }).join(", ")) +
      (job[3].length > 6 ? " …" : "");
  }
  function tooltip(evt, r) {
    var t = document.getElementById("tooltip");
    if (!evt || r === undefined || !live) { t.hidden = true; return; }
    t.innerHTML = rackText(r);
    t.hidden = false;
    var x = evt.clientX + 14, y = evt.clientY + 14;
    if (x + 300 > window.innerWidth) x = Math.max(0, evt.clientX - 310);
    if (y + t.offsetHeight > window.innerHeight) y = Math.max(0, evt.clientY - t.offsetHeight - 10);
    t.style.left = x + "px"; t.style.top = y + "px";
  }
  function rackAt(evt) {
    var a = evt.target.getAttribute && evt.target.getAttribute("data-rack");
    return a === null || a === undefined ? undefined : Number(a);
  }
  function onHover(evt) {
    var r = rackAt(evt);
    tooltip(evt, r);
    if (!pinned) highlight(r === undefined ? null : {kind: "rack", key: r});
  }
  function onClick(evt) {
    var r = rackAt(evt);
    if (r === undefined) { pinned = null; highlight(null); return; }
    pinned = pinned && pinned.kind === "rack" && pinned.key === r ? null : {kind: "rack", key: r};
    highlight(pinned);
  }
  var list = document.getElementById("jobs-list");
  list.addEventListener("mouseover", function (evt) {
    var li = evt.target.closest("li[data-job]");
    if (li && !pinned) highlight({kind: "job", key: li.getAttribute("data-job")});
  });
  list.addEventListener("mouseleave", function () { if (!pinned) highlight(null); });
  list.addEventListener("click", function (evt) {
    var li = evt.target.closest("li[data-job]");
    if (!li) return;
    var id = li.getAttribute("data-job");
    pinned = pinned && pinned.kind === "job" && pinned.key === id ? null : {kind: "job", key: id};
    highlight(pinned);
  });
  document.getElementById("job-filter").addEventListener("input", function () { if (live) drawJobs(); });

  // ---- polling ------------------------------------------------------------------------

  function setLive(ok, text) {
    var e = document.getElementById("live");
    e.textContent = text;
    e.classList.toggle("stale", !ok);
  }
  function poll() {
    var url = "/v1/floor" + (seq === null ? "" : "?since=" + seq);
    fetch(url, {cache: "no-store"}).then(function (reply) {
      if (!reply.ok) throw new Error("HTTP " + reply.status);
      return reply.json();
    }).then(function (view) {
      if (!view.unchanged) apply(view);
      document.body.setAttribute("data-seq", seq);
      setLive(true, "live · journal " + seq + " · " + new Date().toLocaleTimeString("en-GB"));
    }).catch(function (err) {
      setLive(false, "service unreachable (" + err.message + "), retrying");
    }).then(function () { setTimeout(poll, POLL_MS); });
  }
  function start() {
    fetch("/v1/floor/layout").then(function (r) { return r.json(); }).then(function (l) {
      layout = l;
      document.getElementById("title").textContent = l.cluster + " floor";
      document.title = l.cluster + " · gpusched floor map";
      drawLegend();
      drawMap();
      poll();
    }).catch(function (err) {
      setLive(false, "cannot load the layout (" + err.message + "), retrying");
      setTimeout(start, 2000);
    });
  }
  start();
})();
