/* chatgate pages: follow an answer live (SSE, polling as fallback); local times in history.
   No inline script anywhere: the CSP allows only this file. Plain ES5-level DOM code, so
   older WebViews run it too. */
"use strict";

(function () {
  var POLL_MS = 2000;
  var POLL_RETRY_MS = 4000;
  var MAX_STREAM_ERRORS = 3;
  var QUIET_SECONDS = 300;

  function fill(template, values) {
    return template.replace(/\{(\w+)\}/g, function (all, key) {
      return key in values ? String(values[key]) : all;
    });
  }

  function duration(root, seconds) {
    var whole = Math.max(0, Math.floor(seconds));
    if (whole < 60) {
      return fill(root.dataset.tSeconds, { s: whole });
    }
    return fill(root.dataset.tMinutes, { m: Math.floor(whole / 60), s: whole % 60 });
  }

  function followAnswer(root) {
    var body = document.getElementById("answer-body");
    var label = document.getElementById("status-label");
    var elapsedEl = document.getElementById("elapsed");
    var waiting = document.getElementById("waiting");
    var notice = document.getElementById("notice");
    var finished = root.dataset.finished === "1";
    var elapsed = parseFloat(root.dataset.elapsed) || 0;
    var since = Date.now();
    var lastHtml = null;
    var ticker = null;
    var source = null;
    var errors = 0;
    var received = false;
    var polling = false;

    function showElapsed() {
      var seconds = finished ? elapsed : elapsed + (Date.now() - since) / 1000;
      var template = finished ? root.dataset.tFinished : root.dataset.tRunning;
      elapsedEl.textContent = fill(template, { time: duration(root, seconds) });
    }

    function setNotice(text) {
      notice.textContent = text || "";
      notice.hidden = !text;
    }

    function apply(view) {
      setNotice("");
      if (view.html !== lastHtml) {
        // The server renders this HTML from markdown with raw HTML disabled and cleans it
        // against an allow-list; the CSP would block any script in it regardless.
        body.innerHTML = view.html;
        lastHtml = view.html;
      }
      waiting.hidden = Boolean(view.html) || view.finished;
      label.textContent = view.label;
      root.dataset.status = view.status;
      elapsed = view.elapsed;
      since = Date.now();
      if (view.finished) {
        finish();
      }
      showElapsed();
    }

    function finish() {
      finished = true;
      root.dataset.finished = "1";
      if (ticker !== null) {
        clearInterval(ticker);
        ticker = null;
      }
      if (source !== null) {
        source.close();
        source = null;
      }
    }

    function gone() {
      finish();
      waiting.hidden = true;
      setNotice(root.dataset.tGone);
    }

    function poll() {
      if (finished) {
        return;
      }
      polling = true;
      var request = new XMLHttpRequest();
      request.open("GET", root.dataset.state);
      request.setRequestHeader("Accept", "application/json");
      request.onload = function () {
        if (request.status === 404) {
          gone();
          return;
        }
        if (request.status !== 200) {
          setNotice(root.dataset.tReconnecting);
          setTimeout(poll, POLL_RETRY_MS);
          return;
        }
        apply(JSON.parse(request.responseText));
        if (!finished) {
          setTimeout(poll, POLL_MS);
        }
      };
      request.onerror = function () {
        setNotice(root.dataset.tReconnecting);
        setTimeout(poll, POLL_RETRY_MS);
      };
      request.send();
    }

    function stream() {
      source = new EventSource(root.dataset.events);
      source.onmessage = function (event) {
        errors = 0;
        received = true;
        apply(JSON.parse(event.data));
      };
      source.onerror = function () {
        // The server ends each stream after a while and the browser reconnects by itself.
        // A stream that never delivered anything (blocked, buffered by a proxy), a refusal
        // (404: gone) or repeated failures mean it cannot work here: poll instead.
        errors += 1;
        if (finished || polling) {
          return;
        }
        var refused = source.readyState === EventSource.CLOSED;
        if (refused || !received || errors >= MAX_STREAM_ERRORS) {
          source.close();
          source = null;
          poll();
        }
      };
    }

    showElapsed();
    if (finished) {
      return;
    }
    ticker = setInterval(showElapsed, 1000);
    if (window.EventSource) {
      stream();
    } else {
      poll();
    }
  }

  function localTimes() {
    // In the reader's own time zone; like a chat app, only when 5 minutes have passed.
    var times = document.querySelectorAll("time[data-epoch]");
    var format = { month: "numeric", day: "numeric", hour: "2-digit", minute: "2-digit" };
    var shown = null;
    for (var i = 0; i < times.length; i += 1) {
      var epoch = parseFloat(times[i].dataset.epoch);
      if (shown !== null && epoch - shown < QUIET_SECONDS) {
        times[i].hidden = true;
        continue;
      }
      shown = epoch;
      times[i].textContent = new Date(epoch * 1000).toLocaleString(
        document.documentElement.lang,
        format
      );
    }
  }

  function start() {
    var answer = document.getElementById("answer");
    if (answer !== null) {
      followAnswer(answer);
    }
    var history = document.getElementById("history");
    if (history !== null) {
      localTimes();
      // Newest at the bottom, like a chat: open there.
      window.scrollTo(0, document.documentElement.scrollHeight);
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
