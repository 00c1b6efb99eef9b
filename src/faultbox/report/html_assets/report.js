/* faultbox report: draws the event traces from the embedded JSON, and small conveniences (copy
   buttons, #test=<name> deep links). Every string from the data is hostile (specs, service logs):
   it only ever reaches the page through textContent or setAttribute, never through innerHTML. */
(function () {
  "use strict";
  var PAGE = 500;          // rows drawn at a time; "show more" adds another page
  var VALUE_LIMIT = 400;   // characters of one field value shown in a row (the full value is its tooltip)

  var data;
  try {
    data = JSON.parse(document.getElementById("faultbox-data").textContent);
  } catch (err) {
    return; // the server-side page still stands without the traces
  }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    }
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function offset(seconds) {
    var ms = seconds * 1000;
    var sign = ms < 0 ? "-" : "+";
    ms = Math.abs(ms);
    return ms < 10000 ? sign + ms.toFixed(1) + " ms" : sign + (ms / 1000).toFixed(3) + " s";
  }

  function fieldPairs(ev) {
    var fields = ev.fields || {};
    return Object.keys(fields).filter(function (k) { return k !== "data"; }).map(function (k) {
      return [k, String(fields[k])];
    });
  }

  function isFaulted(ev) {
    // a syscall decided by a fault, or a protocol fault rule that fired in a proxy
    return ev.type === "proxy" || (ev.type === "syscall" && ((ev.fields || {}).decision || "allow") !== "allow");
  }

  // -- one test's trace ---------------------------------------------------------------------

  function Trace(box, test) {
    this.box = box;
    this.test = test;
    this.events = test.events || [];
    this.t0 = this.events.length ? this.events[0].ts : 0;
    this.violating = test.violation ? test.violation.seq : null;
    this.hidden = {};
    this.text = "";
    this.limit = PAGE;
    this.haystacks = this.events.map(function (ev) {
      var pairs = fieldPairs(ev).map(function (p) { return p[0] + "=" + p[1]; }).join(" ");
      return ("#" + ev.seq + " " + ev.type + " " + ev.service + " " + pairs).toLowerCase();
    });
    this.build();
    this.draw();
  }

  Trace.prototype.build = function () {
    var self = this;
    var tools = el("div", { "class": "trace-tools" });
    var search = el("input", { type: "search", placeholder: "filter: text in any field", "aria-label": "filter events" });
    search.addEventListener("input", function () {
      self.text = search.value.trim().toLowerCase();
      self.limit = PAGE;
      self.draw();
    });
    tools.appendChild(search);
    this.typeCounts().forEach(function (pair) {
      var chip = el("button", { type: "button", "class": "chip on", title: "show or hide " + pair[0] + " events" },
        pair[0] + " " + pair[1]);
      chip.addEventListener("click", function () {
        self.hidden[pair[0]] = !self.hidden[pair[0]];
        chip.classList.toggle("on", !self.hidden[pair[0]]);
        self.limit = PAGE;
        self.draw();
      });
      tools.appendChild(chip);
    });
    this.count = el("span", { "class": "trace-count" });
    tools.appendChild(this.count);
    var table = el("table", { "class": "events" });
    var head = el("tr");
    ["seq", "time", "type", "service", "fields"].forEach(function (h) { head.appendChild(el("th", null, h)); });
    table.appendChild(el("thead")).appendChild(head);
    this.tbody = table.appendChild(el("tbody"));
    this.more = el("button", { type: "button" });
    this.more.addEventListener("click", function () { self.limit += PAGE; self.draw(); });
    var scroll = el("div", { "class": "scroll" });
    scroll.appendChild(table);
    this.box.textContent = "";
    this.box.appendChild(tools);
    this.box.appendChild(scroll);
    this.box.appendChild(this.more);
  };

  Trace.prototype.typeCounts = function () {
    var counts = {};
    var order = [];
    this.events.forEach(function (ev) {
      if (!(ev.type in counts)) { counts[ev.type] = 0; order.push(ev.type); }
      counts[ev.type] += 1;
    });
    return order.map(function (t) { return [t, counts[t]]; });
  };

  Trace.prototype.filtered = function () {
    var self = this;
    return this.text !== "" || Object.keys(this.hidden).some(function (k) { return self.hidden[k]; });
  };

  Trace.prototype.draw = function () {
    var filtered = this.filtered();
    var dropped = this.test.events_dropped || 0;
    var shown = 0, matching = 0, prevSeq = null;
    var frag = document.createDocumentFragment();
    for (var i = 0; i < this.events.length; i++) {
      var ev = this.events[i];
      if (this.hidden[ev.type] || (this.text && this.haystacks[i].indexOf(this.text) < 0)) continue;
      matching += 1;
      if (shown >= this.limit) continue;
      // Where the embedded trace skips seqs, say so: a reader must not take the rows as contiguous.
      if (!filtered && dropped && prevSeq !== null && ev.seq > prevSeq + 1) {
        frag.appendChild(this.gapRow(ev.seq - prevSeq - 1));
      }
      frag.appendChild(this.row(ev));
      prevSeq = ev.seq;
      shown += 1;
    }
    this.tbody.textContent = "";
    this.tbody.appendChild(frag);
    var total = this.events.length;
    this.count.textContent = (filtered ? matching + " of " + total : String(total)) + " embedded events" +
      (dropped ? " (" + dropped + " more not embedded)" : "");
    var left = matching - shown;
    this.more.hidden = left <= 0;
    this.more.textContent = "show " + Math.min(PAGE, left) + " more (" + left + " left)";
  };

  Trace.prototype.gapRow = function (n) {
    var tr = el("tr", { "class": "gap" });
    tr.appendChild(el("td", { colspan: "5" }, "… " + n + " event" + (n === 1 ? "" : "s") + " not embedded …"));
    return tr;
  };

  Trace.prototype.row = function (ev) {
    var classes = [];
    if (isFaulted(ev)) classes.push("faulted");
    if (ev.seq === this.violating) classes.push("violating");
    var tr = el("tr", classes.length ? { "class": classes.join(" ") } : null);
    tr.appendChild(el("td", { "class": "num" }, ev.seq));
    tr.appendChild(el("td", { "class": "num" }, typeof ev.ts === "number" ? offset(ev.ts - this.t0) : ""));
    tr.appendChild(el("td", null, ev.type));
    tr.appendChild(el("td", null, ev.service));
    var cell = el("td", { "class": "fields" });
    var full = [];
    fieldPairs(ev).forEach(function (p, i) {
      var value = p[1].length > VALUE_LIMIT ? p[1].slice(0, VALUE_LIMIT) + "…" : p[1];
      if (i) cell.appendChild(document.createTextNode(" "));
      cell.appendChild(el("b", null, p[0]));
      cell.appendChild(document.createTextNode("=" + value));
      full.push(p[0] + "=" + p[1]);
    });
    if (full.join(" ").length > VALUE_LIMIT) cell.setAttribute("title", full.join("\n"));
    tr.appendChild(cell);
    return tr;
  };

  // Traces are drawn when they scroll into view: a run of hundreds of tests stays quick to open.
  function setUpTraces() {
    var boxes = Array.prototype.slice.call(document.querySelectorAll(".trace[data-test]"));
    function draw(box) {
      var test = data.tests[Number(box.getAttribute("data-test"))];
      if (test && !box.hasAttribute("data-drawn")) {
        box.setAttribute("data-drawn", "");
        new Trace(box, test);
      }
    }
    if (!("IntersectionObserver" in window)) { boxes.forEach(draw); return; }
    var seen = new IntersectionObserver(function (entries) {
      entries.forEach(function (entry) {
        if (entry.isIntersecting) { seen.unobserve(entry.target); draw(entry.target); }
      });
    }, { rootMargin: "400px" });
    boxes.forEach(function (box) { seen.observe(box); });
  }

  // -- copy buttons and deep links ----------------------------------------------------------

  function setUpCopy() {
    document.querySelectorAll("button.copy").forEach(function (button) {
      button.hidden = false;
      button.addEventListener("click", function () {
        var text = button.getAttribute("data-copy") || "";
        var done = function () {
          button.textContent = "copied";
          setTimeout(function () { button.textContent = "copy"; }, 1500);
        };
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(text).then(done, function () { selectText(button); });
        } else {
          selectText(button); // file:// pages are often not a secure context: let the user press Ctrl-C
        }
      });
    });
  }

  function selectText(button) {
    var code = button.parentNode.querySelector("code");
    var range = document.createRange();
    range.selectNodeContents(code);
    var sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
  }

  // Both #test-<name> (the element ids) and #test=<name> (the reference product's links) open a test.
  function openFromHash() {
    var hash;
    try { hash = decodeURIComponent(location.hash.slice(1)); } catch (err) { return; }
    if (!hash) return;
    var target = document.getElementById(hash.indexOf("test=") === 0 ? "test-" + hash.slice(5) : hash);
    if (!target || !target.classList.contains("test")) return;
    var details = target.querySelector("details");
    if (details) details.open = true;
    if (target.scrollIntoView) target.scrollIntoView();
  }

  document.addEventListener("click", function (event) {
    var link = event.target.closest ? event.target.closest("a[href^='#test-']") : null;
    if (link && link.getAttribute("href") === location.hash) openFromHash(); // same hash: no hashchange
  });
  window.addEventListener("hashchange", openFromHash);
  setUpTraces();
  setUpCopy();
  openFromHash();
})();
