// pushdock dashboard: progressive enhancement only (every page works without it).
// Live logs: an element with data-stream="URL" is filled from that Server-Sent Events URL.
(function () {
  "use strict";
  function follow(el) {
    var source = new EventSource(el.dataset.stream);
    var status = document.getElementById(el.dataset.status || "");
    if (status) status.textContent = "following…";
    source.onmessage = function (e) {
      el.appendChild(document.createTextNode(e.data + "\n"));
      el.scrollTop = el.scrollHeight;
    };
    source.addEventListener("end", function (e) {
      var end = JSON.parse(e.data);
      if (status) status.textContent = "finished: " + end.result + (end.release ? " (" + end.release + ")" : "");
      el.dataset.done = end.result;
      source.close();
    });
    source.onerror = function () {
      if (el.dataset.done) return;
      if (status) status.textContent = "waiting…";
    };
  }
  document.querySelectorAll("[data-stream]").forEach(follow);
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (e) {
      if (!window.confirm(form.dataset.confirm)) e.preventDefault();
    });
  });
})();
