// The dashboard's behaviour: local times, live updates (server-sent events), small helpers.
(function () {
  "use strict";

  // -- times: shown in the browser's zone, UTC in the title ---------------------------
  var fmt = new Intl.DateTimeFormat(undefined, {
    month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
    hourCycle: "h23",
  });
  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      var at = new Date(el.getAttribute("datetime"));
      if (!isNaN(at)) el.textContent = fmt.format(at);
    });
  }

  // -- theme ---------------------------------------------------------------------------
  function toggleTheme() {
    var root = document.documentElement;
    var dark = root.dataset.theme
      ? root.dataset.theme === "dark"
      : window.matchMedia("(prefers-color-scheme: dark)").matches;
    root.dataset.theme = dark ? "light" : "dark";
    try { localStorage.setItem("tf-theme", root.dataset.theme); } catch (e) { /* ignore */ }
  }

  // -- forms ---------------------------------------------------------------------------
  function selectedCount() {
    return document.querySelectorAll('input[name="run"][form="bulk"]:checked').length;
  }
  function updateSelected() {
    var label = document.querySelector("[data-selected-count]");
    if (label) label.textContent = selectedCount() + " selected";
  }
  function checkJson(form) {
    var ok = true;
    form.querySelectorAll("[data-json]").forEach(function (field) {
      var text = field.value.trim();
      var error = form.querySelector(".field-error");
      try {
        if (text) JSON.parse(text);
        field.removeAttribute("aria-invalid");
        if (error) { error.hidden = true; error.textContent = ""; }
      } catch (e) {
        ok = false;
        field.setAttribute("aria-invalid", "true");
        if (error) { error.hidden = false; error.textContent = "Not valid JSON: " + e.message; }
        field.focus();
      }
    });
    return ok;
  }

  // -- logs: filter by level and text, in the page ---------------------------------------
  var logFilter = { level: "", text: "" };
  function filterLogs(root) {
    var level = root.querySelector("[data-log-level]");
    var search = root.querySelector("[data-log-search]");
    if (level) level.value = logFilter.level;
    if (search) search.value = logFilter.text;
    root.querySelectorAll(".log-lines li[data-level]").forEach(function (li) {
      var show = (!logFilter.level || li.dataset.level === logFilter.level) &&
        (!logFilter.text || li.textContent.toLowerCase().indexOf(logFilter.text) >= 0);
      li.hidden = !show;
    });
  }

  // -- live updates ----------------------------------------------------------------------
  var pending = new Map();
  function refresh(el) {
    if (pending.has(el)) return;
    // coalesce a burst of changes into one request
    pending.set(el, setTimeout(function () {
      pending.delete(el);
      var swap = el.dataset.liveSwap || "innerHTML";
      if (swap !== "none" && el.contains(document.activeElement) &&
          document.activeElement.matches("input, textarea, select")) {
        return; // never swap a form the person is typing in
      }
      var ticked = Array.prototype.map.call(
        el.querySelectorAll('input[name="run"]:checked'), function (c) { return c.value; });
      // swap "none": the answer carries out-of-band parts (hx-swap-oob) that replace
      // the elements with their ids, e.g. a queue's counts but not the forms beside them
      window.htmx.ajax("GET", el.dataset.liveSrc, { target: el, swap: swap }).then(function () {
        ticked.forEach(function (id) {
          var box = el.querySelector('input[name="run"][value="' + id + '"]');
          if (box) box.checked = true;
        });
      });
    }, 150));
  }
  function connectLive() {
    var regions = document.querySelectorAll("[data-live]");
    if (!regions.length || !window.EventSource) return;
    var run = document.querySelector("[data-live=run]");
    var after = regions[0].dataset.liveAfter || "";
    var source = new EventSource(
      "/live?after=" + encodeURIComponent(after) +
      (run ? "&run=" + encodeURIComponent(run.dataset.run) : ""));
    source.addEventListener("change", function (message) {
      var change;
      try { change = JSON.parse(message.data); } catch (e) { return; }
      regions.forEach(function (el) {
        // "runs": the runs list; "list": a page of counts (home, queues)
        if (el.dataset.live === "runs" || el.dataset.live === "list") refresh(el);
        else if (el.dataset.live === "run" && change.runId === el.dataset.run) refresh(el);
      });
    });
    window.addEventListener("pagehide", function () { source.close(); });
    // what the change feed does not carry (workers' heartbeats, how long the oldest
    // run has waited) is read again every data-live-every seconds
    regions.forEach(function (el) {
      var every = parseFloat(el.dataset.liveEvery || "");
      if (every > 0) setInterval(function () { refresh(el); }, every * 1000);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    filterLogs(document);
    updateSelected();
    connectLive();
    document.body.addEventListener("htmx:afterSwap", function (event) {
      localTimes(event.target);
      filterLogs(event.target);
      updateSelected();
    });
  });

  document.addEventListener("click", function (event) {
    var target = event.target.closest("[data-theme-toggle], [data-copy], [data-confirm]");
    if (!target) return;
    if (target.matches("[data-theme-toggle]")) toggleTheme();
    else if (target.matches("[data-copy]")) {
      var source = document.querySelector(target.dataset.copy);
      if (source && navigator.clipboard) {
        navigator.clipboard.writeText(source.textContent).then(function () {
          target.textContent = "Copied";
        }, function () { target.textContent = "Copy failed"; });
      }
    } else if (target.matches("[data-confirm]")) {
      var n = selectedCount();
      if (target.form && target.form.id === "bulk" && n === 0) { event.preventDefault(); return; }
      if (!window.confirm(target.dataset.confirm.replace("{n}", n))) event.preventDefault();
    }
  });
  document.addEventListener("change", function (event) {
    var el = event.target;
    if (el.matches("[data-autosubmit]")) el.form.submit();
    else if (el.matches('input[name="run"]')) updateSelected();
    else if (el.matches("[data-log-level]")) { logFilter.level = el.value; filterLogs(document); }
  });
  document.addEventListener("input", function (event) {
    if (event.target.matches("[data-log-search]")) {
      logFilter.text = event.target.value.toLowerCase();
      filterLogs(document);
    }
  });
  document.addEventListener("submit", function (event) {
    if (event.target.querySelector("[data-json]") && !checkJson(event.target)) event.preventDefault();
  });
})();
