/* The cookbook's "Run": a recipe page's examples, run by Python in the reader's browser.
 *
 * Each Python block of a recipe page gets a bar under it: Run, Edit, and what happened.  Run
 * executes the page's blocks up to that one, in page order, as the tests run them on SQLite
 * (the SQLite tab, the untabbed blocks and the checks the page does not show), in a Web Worker
 * (worker.mjs) holding Pyodide and SQLAlchemy, and shows each block's output under it, compared
 * with what the page shows.  Nothing of Python is fetched before the first Run.  Without
 * JavaScript the page is what it was: this script only adds.
 *
 * This file only adds the bars; the rest (session.mjs) loads on the first Run or Edit, so a
 * page costs its readers a few kilobytes until they ask for more.
 */
(function () {
  "use strict";

  var element = document.getElementById("cookbook-runner");
  var script = document.currentScript;
  if (!element || !script) return;
  var settings = JSON.parse(element.textContent);
  var shown = Array.prototype.slice.call(document.querySelectorAll("div.highlight-python.cookbook-run"));
  if (shown.length !== settings.blocks.length) return;

  var base = new URL(".", script.src);
  var urls = {
    session: new URL("session.mjs?v=" + settings.hashes.session, base).href,
    worker: new URL("worker.mjs?v=" + settings.hashes.worker, base).href,
    runner: new URL("cookbook_runner.py?v=" + settings.hashes.runner, base).href,
    pyodide: settings.pyodide && new URL(settings.pyodide, document.baseURI).href,
    data: new URL(settings.data, document.baseURI).href,
  };
  var missing = typeof WebAssembly !== "object" ? "WebAssembly" : typeof Worker !== "function" ? "Web Workers" : null;
  var why = missing ? "Run needs " + missing + ", which this browser does not offer (or has turned off)"
    : settings.pyodide ? null : "Run is not available: this copy of the site was built without its Python (make pyodide)";

  var bars = [];        // per shown block: {bar, run, edit, status, output, editor, box, unit}
  var session = null;   // promise of session.mjs, loaded on the first Run or Edit

  function make(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // Everything past adding the bars lives in session.mjs, fetched when the reader first asks.
  function act(action, index) {
    if (!session) {
      bars[index].status.textContent = "Starting…";
      session = import(urls.session).then(function (module) {
        return module.start({ settings: settings, shown: shown, bars: bars, urls: urls, make: make, why: why });
      });
      session.catch(function (error) {
        session = null;
        bars[index].status.textContent = "Run could not load: " + error.message;
        bars[index].bar.dataset.state = "failed";
      });
    }
    session.then(function (actions) {
      if (bars[index].status.textContent === "Starting…") bars[index].status.textContent = "";
      actions[action](index);
    });
  }

  // --- The bars ---------------------------------------------------------------------------------

  shown.forEach(function (block, index) {
    var info = settings.blocks[index];
    var bar = make("div", "cookbook-runbar");
    bar.setAttribute("role", "group");
    bar.setAttribute("aria-label", "Run this example in your browser");
    var run = make("button", "cookbook-run-button", "Run");
    run.type = "button";
    bar.appendChild(run);
    var entry = { bar: bar, run: run, edit: null, status: null, output: null, editor: null, box: null, unit: info.run };
    if (info.run === undefined || why) {
      run.disabled = true;
      var note = make("span", "cookbook-run-note", info.why || why);
      note.id = "cookbook-run-note-" + index;
      run.setAttribute("aria-describedby", note.id);
      bar.appendChild(note);
      bar.dataset.runnable = "no";
      run.title = info.why || why;
    } else {
      run.title = "Run the page's examples up to this one, in your browser";
      run.addEventListener("click", function () { act("runTo", index); });
      var edit = make("button", "cookbook-edit-button", "Edit");
      edit.type = "button";
      edit.title = "Change this example, then run it";
      edit.addEventListener("click", function () { act("toggleEdit", index); });
      bar.appendChild(edit);
      entry.edit = edit;
      // What a Run or Edit did, said to screen readers as it changes (and shown beside them).
      entry.status = make("span", "cookbook-run-status");
      entry.status.setAttribute("role", "status");
      entry.status.setAttribute("aria-live", "polite");
      entry.status.setAttribute("aria-atomic", "true");
      bar.appendChild(entry.status);
      // The output scrolls sideways as one box, which the keyboard can reach to scroll it.
      entry.output = make("div", "cookbook-output");
      entry.output.id = "cookbook-output-" + index;
      entry.output.hidden = true;
      entry.output.tabIndex = 0;
      entry.output.setAttribute("role", "group");
      entry.output.setAttribute("aria-label", "Output of this example in your browser");
      run.setAttribute("aria-controls", entry.output.id);
      bar.dataset.runnable = "yes";
    }
    block.parentNode.insertBefore(bar, block.nextSibling);
    if (entry.output) bar.parentNode.insertBefore(entry.output, bar.nextSibling);
    bars.push(entry);
  });

})();
