// edge-centre console: live updates (server-sent events), acknowledging
// in place. Plain DOM; no third-party code, nothing from the internet.
(function () {
  "use strict";
  var csrf = document.body.getAttribute("data-csrf") || "";
  var page = document.body.getAttribute("data-page") || "";
  var user = document.body.getAttribute("data-user") || "you";
  var counter = document.getElementById("unacked-count");
  var live = document.getElementById("live");

  function refreshCount() {
    fetch("/api/unacked", { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (j) {
        if (!j || !counter) { return; }
        counter.textContent = String(j.unacked);
        counter.parentNode.classList.toggle("hot", j.unacked > 0);
      })
      .catch(function () {});
  }

  function filterValue(name) {
    var el = document.getElementById("filter-" + name);
    if (!el) { return ""; }
    if (el.type === "checkbox") { return el.checked ? "1" : ""; }
    return el.value.trim();
  }

  // Inserts a new incident at the top of the queue when it matches the
  // filters and is not already shown.
  function addAlert(id) {
    var list = document.getElementById("alerts");
    if (!list || page !== "alerts") { return; }
    var shown = list.querySelectorAll(".alert-item");
    for (var i = 0; i < shown.length; i++) {
      if (shown[i].getAttribute("data-alert-id") === id) { return; }
    }
    fetch("/alerts/item?id=" + encodeURIComponent(id), { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : ""; })
      .then(function (html) {
        if (!html) { return; }
        var t = document.createElement("template");
        t.innerHTML = html.trim(); // rendered and escaped by the server
        var item = t.content.firstElementChild;
        if (!item) { return; }
        var keys = ["district", "camera", "kind", "label"];
        for (var k = 0; k < keys.length; k++) {
          var want = filterValue(keys[k]);
          if (want && item.getAttribute("data-" + keys[k]) !== want) { return; }
        }
        if (document.querySelector('.alert-item[data-alert-id="' + CSS.escape(id) + '"]')) { return; }
        item.classList.add("fresh");
        list.insertBefore(item, list.firstChild);
        var none = document.getElementById("no-alerts");
        if (none) { none.remove(); }
      })
      .catch(function () {});
  }

  function setCamera(u) {
    var row = document.querySelector('.camera-row[data-camera="' + CSS.escape(u.node + "/" + u.camera) + '"]');
    if (!row) { return; }
    var cell = row.querySelector(".state");
    if (cell && cell.textContent !== "node offline") {
      cell.textContent = u.state;
      cell.className = "state state-" + u.state;
      row.classList.toggle("broken", u.state !== "streaming");
    }
  }

  if (window.EventSource && live) {
    var es = new EventSource("/events/stream");
    es.addEventListener("hello", function () { live.className = "live on"; });
    es.onerror = function () { live.className = "live off"; };
    es.addEventListener("alert", function (e) {
      var u = JSON.parse(e.data);
      addAlert(u.alert_id);
      refreshCount();
    });
    es.addEventListener("camera", function (e) { setCamera(JSON.parse(e.data)); });
    es.addEventListener("lagged", function () { refreshCount(); });
  }

  // Acknowledge without leaving the page (the form still works without JS).
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    if (!form.classList || !form.classList.contains("ack-form")) { return; }
    ev.preventDefault();
    fetch(form.getAttribute("action"), {
      method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": csrf }
    }).then(function (r) {
      if (r.status === 204) {
        var item = form.closest(".alert-item");
        if (item) {
          item.classList.remove("open", "fresh");
          item.classList.add("acked");
          var s = document.createElement("span");
          s.className = "acked-by";
          s.textContent = "acknowledged by " + user + " just now";
          form.replaceWith(s);
        }
        refreshCount();
      } else if (r.status === 403) {
        alert("You may not acknowledge (viewer), or your session changed: reload the page.");
      }
    }).catch(function () {});
  });
})();
