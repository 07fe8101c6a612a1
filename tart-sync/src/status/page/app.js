// The status page's live updates (served at /static/app.js; the page works
// without it, reloading itself every 5 s instead).
//
// Listens to /api/events (Server-Sent Events, same ?state= and ?page= as the
// page) and patches the rows that changed, in place; builds rows the way
// table.rs does. Every text goes through textContent or setAttribute: no
// HTML is ever parsed from an event.
(function () {
  "use strict";

  var SVG = "http://www.w3.org/2000/svg";
  var section = document.getElementById("nodes");
  var rows = document.getElementById("rows");
  var live = document.getElementById("live");

  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    for (var k in attrs) {
      if (Object.prototype.hasOwnProperty.call(attrs, k) && attrs[k] !== null && attrs[k] !== undefined) {
        e.setAttribute(k, String(attrs[k]));
      }
    }
    (children || []).forEach(function (c) {
      e.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return e;
  }

  // `42s`, `5m`, `3h 12m`, `2d 4h` (text.rs' short_duration).
  function shortDuration(secs) {
    if (secs < 60) return secs + "s";
    if (secs < 3600) return Math.floor(secs / 60) + "m";
    if (secs < 86400) {
      var h = Math.floor(secs / 3600), m = Math.floor((secs % 3600) / 60);
      return m ? h + "h " + m + "m" : h + "h";
    }
    var d = Math.floor(secs / 86400), hh = Math.floor((secs % 86400) / 3600);
    return hh ? d + "d " + hh + "h" : d + "d";
  }

  function relative(iso) {
    var secs = Math.round((Date.now() - Date.parse(iso)) / 1000);
    if (secs === 0 || isNaN(secs)) return "just now";
    return secs > 0 ? shortDuration(secs) + " ago" : "in " + shortDuration(-secs);
  }

  function timeAt(iso) {
    return el("time", { datetime: iso, title: iso }, [relative(iso)]);
  }

  function badge(cls, label, title) {
    return el("span", { "class": "badge " + cls, title: title }, [label]);
  }

  function latencyText(ms) {
    if (ms < 10) return ms.toFixed(1) + " ms";
    if (ms < 1000) return ms.toFixed(0) + " ms";
    return (ms / 1000).toFixed(2) + " s";
  }

  function bar(history) {
    var svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "bar");
    svg.setAttribute("viewBox", "0 0 1440 10");
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", history.title);
    var title = document.createElementNS(SVG, "title");
    title.textContent = history.title;
    svg.appendChild(title);
    var blocks = [{ x: 0, w: 1440, s: "unknown" }].concat(history.blocks);
    blocks.forEach(function (b) {
      var r = document.createElementNS(SVG, "rect");
      r.setAttribute("class", b.s);
      if (b.s !== "unknown" || b.x !== 0) r.setAttribute("x", b.x);
      r.setAttribute("width", b.w);
      r.setAttribute("height", "10");
      svg.appendChild(r);
    });
    return svg;
  }

  var TAILNET = { online: "online", grace: "in grace", offline: "offline" };
  var SERVICE = { up: "up", down: "down", unknown: "not probed" };

  // One row, like table.rs' row().
  function buildRow(r) {
    var serviceTitle = r.service === "up" ? (r.http_status ? "HTTP " + r.http_status : "answered")
      : r.service === "down" ? (r.error || "probe failed") : "not probed (yet)";
    var service = el("td", { "class": "service", "data-label": "Service" },
      [el("span", {}, [badge(r.service, SERVICE[r.service] || r.service, serviceTitle)])]);
    if (r.error) service.appendChild(el("div", { "class": "error small" }, [r.error]));
    var sinceText = el("span", {}, r.since
      ? [r.since_what + " ", timeAt(r.since)]
      : [el("span", { "class": "muted" }, ["—"])]);
    if (r.grace_until) {
      sinceText.appendChild(document.createTextNode(" · grace ends "));
      sinceText.appendChild(timeAt(r.grace_until));
    }
    var since = el("td", { "class": "since", "data-label": "Since" }, [sinceText]);
    var hist = el("td", { "class": "hist", "data-label": "Last 24 h" });
    hist.appendChild(bar(r.history));
    return el("tr", {
      "class": "node", id: "tart-" + r.name, "data-name": r.name, "data-state": r.tailnet,
      "data-node-id": r.node_id, "data-service": r.service
    }, [
      el("td", { "class": "name", "data-label": "Name", title: "node " + r.node_id + ", user " + r.user }, [r.name]),
      el("td", { "class": "tailnet", "data-label": "Tailnet" }, [badge(r.tailnet, TAILNET[r.tailnet] || r.tailnet)]),
      service,
      el("td", { "class": "num latency", "data-label": "Latency" },
        [r.latency_ms === null ? el("span", { "class": "muted" }, ["—"]) : latencyText(r.latency_ms)]),
      since,
      hist,
      el("td", { "class": "url", "data-label": "URL" },
        [el("span", {}, [el("a", { href: r.url }, [r.url]), " ", el("code", { "class": "muted" }, [r.upstream])])])
    ]);
  }

  function findRow(name) {
    return document.getElementById("tart-" + name);
  }

  function setText(id, text) {
    var e = document.getElementById(id);
    if (e) e.textContent = String(text);
  }

  function apply(u) {
    var fresh = {};
    u.rows.forEach(function (r) {
      var tr = buildRow(r);
      fresh[r.name] = tr;
      var old = findRow(r.name);
      if (old) {
        tr.classList.add("changed");
        old.replaceWith(tr);
      }
    });
    if (u.names && rows) {
      // The page's TARTs changed: keep them in the server's order.
      var keep = {};
      u.names.forEach(function (n) {
        var tr = fresh[n] || findRow(n);
        if (tr) {
          keep[n] = true;
          rows.appendChild(tr);
        }
      });
      Array.prototype.slice.call(rows.children).forEach(function (tr) {
        if (!keep[tr.getAttribute("data-name")]) tr.remove();
      });
      // Say so when no TART is left in this state (as the page does).
      var none = document.getElementById("no-match");
      if (!u.names.length && !none && section) {
        var scroll = section.querySelector(".scroll");
        if (scroll) scroll.before(el("p", { "class": "empty", id: "no-match" }, ["No TART is in this state now."]));
      } else if (u.names.length && none) {
        none.remove();
      }
    }
    pageLinks(u);
    var c = u.counts;
    ["all", "online", "grace", "offline", "up", "down", "unknown"].forEach(function (k) {
      setText("count-" + k, c[k]);
    });
    setText("counts", c.all + " · " + c.online + " online · " + c.grace + " in grace · " + c.offline + " offline · " + c.down + " down");
    var summary = document.getElementById("summary");
    if (summary) {
      summary.textContent = "";
      summary.className = "banner " + (u.problems.length ? "bad" : "ok");
      summary.setAttribute("data-ok", u.problems.length ? "false" : "true");
      if (u.problems.length) {
        summary.appendChild(document.createTextNode("Needs attention:"));
        summary.appendChild(el("ul", {}, u.problems.map(function (p) { return el("li", {}, [p]); })));
      } else {
        summary.textContent = "All in sync.";
      }
    }
    var updated = document.getElementById("updated");
    if (updated) {
      var now = new Date().toISOString().replace(/\.\d+Z$/, "Z");
      updated.setAttribute("datetime", now);
      updated.textContent = now;
    }
  }

  // "Page 2 of 3: TARTs 501–1000 of 1234 · first · prev · next · last", like table.rs.
  function pageLinks(u) {
    if (!section) return;
    var state = section.getAttribute("data-state");
    var href = function (p) {
      if (state === "all") return p === 1 ? "?" : "?page=" + p;
      return p === 1 ? "?state=" + state : "?state=" + state + "&page=" + p;
    };
    // 500: PAGE_SIZE in page/mod.rs.
    var start = (u.page - 1) * 500 + 1;
    var end = Math.min(u.page * 500, u.matching);
    var text = "Page " + u.page + " of " + u.pages + ": TARTs " + start + "–" + end + " of " + u.matching;
    var old = section.querySelectorAll("p.pages");
    if (old.length && old[0].firstChild && old[0].firstChild.textContent === text) return;
    if (!old.length && u.pages <= 1) return;
    Array.prototype.forEach.call(old, function (p) { p.remove(); });
    if (u.pages <= 1) return;
    var build = function () {
      var p = el("p", { "class": "pages", id: "pages", "data-page": u.page, "data-pages": u.pages }, [text]);
      [["first", 1], ["prev", Math.max(u.page - 1, 1)], ["next", Math.min(u.page + 1, u.pages)], ["last", u.pages]]
        .forEach(function (l) {
          if (l[1] !== u.page) {
            p.appendChild(document.createTextNode(" · "));
            p.appendChild(el("a", { href: href(l[1]), rel: l[0] }, [l[0]]));
          }
        });
      p.appendChild(document.createTextNode(" · every TART: "));
      p.appendChild(el("a", { href: "/api/status" }, ["JSON"]));
      p.appendChild(document.createTextNode(" (paged with ?offset=&limit=)"));
      return p;
    };
    var scroll = section.querySelector(".scroll");
    if (scroll) {
      scroll.before(build());
      scroll.after(build());
    }
  }

  function tick() {
    Array.prototype.forEach.call(document.querySelectorAll("time[datetime]"), function (t) {
      if (t.id !== "updated") t.textContent = relative(t.getAttribute("datetime"));
    });
  }

  function connect() {
    if (!section || !window.EventSource) return;
    var q = new URLSearchParams();
    q.set("state", section.getAttribute("data-state"));
    q.set("page", section.getAttribute("data-page"));
    q.set("rev", section.getAttribute("data-rev"));
    var es = new EventSource("/api/events?" + q.toString());
    es.addEventListener("rows", function (e) {
      apply(JSON.parse(e.data));
      if (live) { live.textContent = "live"; live.className = "on"; }
    });
    es.onerror = function () {
      if (live) { live.textContent = "reconnecting…"; live.className = "off"; }
    };
  }

  // The time from navigation to a laid-out page (read by the benchmarks).
  window.addEventListener("load", function () {
    void document.body.offsetHeight;
    document.documentElement.setAttribute("data-ready-ms", String(Math.round(performance.now())));
  });
  setInterval(tick, 5000);
  connect();
})();
