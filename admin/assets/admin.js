// Keeps the admin page current: follows the server events, and swaps in
// the live fragment when a plugin changes and every few seconds. Event
// text is inserted as text, never as markup; the fragment is the
// server's own HTML, escaped there.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var status = document.getElementById("status");
  var list = document.getElementById("events");
  var base = location.pathname.replace(/[^/]*$/, "");
  var pending = null, inflight = false, again = false, last = null;

  function addCopyButtons(root) {
    if (!navigator.clipboard) return;
    root.querySelectorAll("code.curl").forEach(function (code) {
      var b = document.createElement("button");
      b.type = "button";
      b.className = "copy";
      b.textContent = "copy";
      b.addEventListener("click", function () {
        navigator.clipboard.writeText(code.textContent).then(function () { b.textContent = "copied"; });
      });
      code.after(b);
    });
  }

  function refresh() {
    if (inflight) { again = true; return; }
    inflight = true;
    fetch(base + "plugins", { cache: "no-store", credentials: "same-origin" })
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.text();
      })
      .then(function (html) {
        // Unchanged: leave the reader's selection alone.
        if (html === last) return;
        last = html;
        // Keep open what the reader opened.
        var open = [];
        live.querySelectorAll("article.plugin details[open]").forEach(function (d) {
          open.push(d.closest("article").id + " " + d.querySelector("summary").textContent);
        });
        live.innerHTML = html;
        live.querySelectorAll("article.plugin details").forEach(function (d) {
          if (open.indexOf(d.closest("article").id + " " + d.querySelector("summary").textContent) >= 0) d.open = true;
        });
        addCopyButtons(live);
        live.dataset.updated = String(Date.now());
      })
      .catch(function (e) { status.textContent = "Update failed: " + e.message; })
      .finally(function () {
        inflight = false;
        if (again) { again = false; refresh(); }
      });
  }

  function soon() {
    if (pending) return;
    pending = setTimeout(function () { pending = null; refresh(); }, 100);
  }

  function show(ev) {
    var none = list.querySelector(".none");
    if (none) none.remove();
    var li = document.createElement("li");
    var t = document.createElement("time");
    t.dateTime = ev.time;
    t.textContent = ev.time.slice(11, 19);
    var name = document.createElement("span");
    name.className = "name";
    name.textContent = ev.name;
    li.append(t, " ", name);
    var p = ev.payload || {};
    if (p.plugin) {
      var s = document.createElement("span");
      s.className = "plugin";
      s.textContent = p.plugin;
      li.append(" ", s);
    }
    if (p.version) {
      var c = document.createElement("code");
      c.textContent = p.version;
      li.append(" ", c);
    }
    if (p.error) {
      var e = document.createElement("span");
      e.className = "error";
      e.textContent = p.error;
      li.append(" ", e);
    }
    list.prepend(li);
    while (list.children.length > 200) list.lastElementChild.remove();
  }

  addCopyButtons(live);
  setInterval(function () { if (!document.hidden) refresh(); }, 2000);
  status.textContent = "Updated every 2 s.";
  if (!window.EventSource || document.body.dataset.events !== "on") return;
  var es = new EventSource(base + "events");
  es.onopen = function () { status.textContent = "Live: following server events."; };
  es.onerror = function () { status.textContent = "Event stream interrupted; retrying."; };
  es.onmessage = function (m) {
    var ev;
    try { ev = JSON.parse(m.data); } catch (e) { return; }
    show(ev);
    if (ev.name.indexOf("plugind.plugin.") === 0) soon();
  };
})();
