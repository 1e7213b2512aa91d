// The part of the cookbook's "Run" that loads on the first press of Run or Edit (runner.js adds
// the bars, and loads this then): the page's data, the worker, running, showing the results,
// editing.  See runner.js for what Run does.

const START_TIMEOUT = 90000;

export function start(page) {
  const { settings, shown, bars, urls, make } = page;
  const versions = settings.versions;
  var units = null;     // the blocks the browser runs, in page order (from the page's data file)
  var dataPromise = null;
  var worker = null;
  var ready = null;     // promise of the worker's versions
  var runtime = null;   // {python, sqlalchemy, sqlite} once Python has started
  var done = 0;         // how many units the current Python state has run
  var stale = true;     // does the next run need a fresh start?
  var running = null;   // the run in progress: {id, index, resolve, reject}
  var nextId = 1;

  // --- The page's data and the worker -----------------------------------------------------------

  function loadData() {
    if (!dataPromise) {
      dataPromise = fetch(urls.data).then(function (response) {
        if (!response.ok) throw new Error("the page's examples (" + urls.data + ") did not load: HTTP " + response.status);
        return response.json();
      }).then(function (data) {
        units = data.blocks;
        // Each unit shows its results in a shown block's panel: its own, or for a check the
        // page does not show, the panel of the block before it.
        var host = null;
        units.forEach(function (unit, n) {
          unit.index = n;
          if (unit.visible) host = settings.blocks.findIndex(function (b) { return b.run === n; });
          unit.host = host;
        });
        var first = settings.blocks.findIndex(function (b) { return b.run !== undefined; });
        units.forEach(function (unit) { if (unit.host === null) unit.host = first; });
        return data;
      });
      dataPromise.catch(function () { dataPromise = null; });
    }
    return dataPromise;
  }

  function startWorker(onStatus) {
    if (ready) return ready;
    ready = new Promise(function (resolve, reject) {
      var timer = setTimeout(function () {
        stopWorker();
        reject(new Error("Python did not start within " + START_TIMEOUT / 1000 + " s"));
      }, START_TIMEOUT);
      try {
        worker = new Worker(urls.worker, { type: "module" });
      } catch (error) {
        clearTimeout(timer);
        reject(error);
        return;
      }
      worker.onerror = function (event) {
        clearTimeout(timer);
        var error = new Error("the worker that runs Python failed" + (event.message ? ": " + event.message : ""));
        stopWorker();
        reject(error);
        if (running) running.reject(error);
      };
      worker.onmessage = function (event) {
        var message = event.data;
        if (message.type === "status") {
          onStatus(message.text);
        } else if (message.type === "ready") {
          clearTimeout(timer);
          runtime = message.versions;
          resolve(runtime);
        } else if (message.type === "failed") {
          clearTimeout(timer);
          var error = new Error(message.error);
          if (running && message.id === running.id) running.reject(error);
          else { stopWorker(); reject(error); }
        } else if (running && message.id === running.id) {
          if (message.type === "result") running.result(message.result);
          else if (message.type === "done") running.resolve();
        }
      };
      worker.postMessage({ type: "init", pyodide: urls.pyodide, runner: urls.runner, lock: settings.hashes.lock });
    });
    ready.catch(function () {});
    return ready;
  }

  function stopWorker() {
    if (worker) worker.terminate();
    worker = null;
    ready = null;
    stale = true;
    done = 0;
  }

  // --- Running ----------------------------------------------------------------------------------

  function setBusy(index, busy) {
    bars.forEach(function (entry, i) {
      if (entry.unit === undefined || page.why) return;
      if (i === index) {
        entry.run.textContent = busy ? "Stop" : "Run";
        entry.run.title = busy ? "Stop Python (the next Run starts it afresh)" : "Run the page's examples up to this one, in your browser";
      } else {
        entry.run.disabled = busy;
      }
    });
  }

  function say(index, text) {
    bars[index].status.textContent = text;
  }

  function runTo(index) {
    if (running) {
      if (running.index === index) {
        var stopped = running;
        stopWorker();
        stopped.reject(new Error("Stopped. The next Run starts Python afresh."));
      }
      return;
    }
    var entry = bars[index];
    var id = nextId++;
    var started = performance.now();
    var run = { id: id, index: index };
    running = run;
    setBusy(index, true);
    entry.bar.dataset.state = "running";
    say(index, ready ? "Running…" : "Starting Python in your browser (the first time, about " + settings.megabytes + " MB)…");

    var finished = new Promise(function (resolve, reject) {
      run.resolve = resolve;
      run.reject = reject;
    });
    Promise.all([loadData(), startWorker(function (text) {
      if (text === "Loading SQLAlchemy") text = "Loading SQLAlchemy " + versions.sqlalchemy + "…";
      else if (text === "Starting Python") text = "Starting Python (Pyodide " + versions.pyodide + ") in your browser…";
      say(index, text);
    })]).then(function () {
      if (running !== run) return;
      var target = entry.unit;
      var last = target;
      while (last + 1 < units.length && !units[last + 1].visible) last++;
      var fresh = stale || target < done;
      var from = fresh ? 0 : done;
      if (fresh) {
        bars.forEach(function (b) { if (b.output) { b.output.hidden = true; b.output.textContent = ""; delete b.output.dataset.state; } });
      }
      say(index, "Running…");
      var touched = [];
      run.result = function (result) { show(result, target, touched); };
      worker.postMessage({
        type: "run",
        id: id,
        page: settings.page,
        fresh: fresh,
        blocks: units.slice(from, last + 1).map(function (unit) {
          var editor = unit.visible ? bars[unit.host].editor : null;
          return { block: unit.block, examples: unit.examples, edited: editor ? editor.value : null };
        }),
      });
      return finished.then(function () {
        finish(touched, index);
        done = last + 1;
        stale = false;
        var seconds = (performance.now() - started) / 1000;
        say(index, summary(index) + " · " + seconds.toFixed(seconds < 10 ? 2 : 1) + " s");
      });
    }).catch(function (error) {
      if (running === run && !(error && /^Stopped/.test(error.message))) stopWorker();
      say(index, (error && error.message ? error.message : String(error)).replace(/^Error: /, ""));
      entry.bar.dataset.state = "failed";
    }).then(function () {
      if (running === run) running = null;
      setBusy(index, false);
      if (entry.bar.dataset.state === "running") entry.bar.dataset.state = "done";
    });
  }

  function summary(index) {
    var output = bars[index].output;
    var differ = output.querySelectorAll('.cookbook-result[data-status="differ"], .cookbook-result[data-status="error"]').length;
    if (bars[index].editor) return "Ran your edited code";
    var checked = output.querySelectorAll('.cookbook-result[data-kind="doctest"]').length;
    if (differ) return "Output differs from the page (" + differ + ")";
    return checked ? "Output as the page shows" : "Ran";
  }

  // --- Showing results --------------------------------------------------------------------------

  function prompted(source) {
    var lines = source.replace(/\n$/, "").split("\n");
    return lines.map(function (line, i) { return (i ? "... " : ">>> ") + line; }).join("\n");
  }

  function renderResult(unit, example, result) {
    var kind = example ? example.kind : "edited";
    var box = make("div", "cookbook-result");
    box.dataset.line = String(result.line);
    box.dataset.status = result.status;
    box.dataset.kind = kind;
    if (result.exception) box.dataset.exception = result.exception;
    if (!unit.visible) {
      box.classList.add("cookbook-check");
      var ok = result.status === "match" || result.status === "ran";
      box.appendChild(make("p", "cookbook-check-note", ok
        ? "A check the page runs without showing it (line " + result.line + ") passed."
        : "A check the page runs without showing it (line " + result.line + ") failed:"));
      if (ok) return box;
    }
    if (result.status === "skipped") {
      box.appendChild(make("p", "cookbook-check-note", "Not run: the tests skip this example (" + result.reason + ")."));
      return box;
    }
    if (kind === "doctest" || kind === "edited") {
      box.appendChild(make("pre", "cookbook-source", prompted(kind === "edited" ? result.source : example.source)));
    }
    var got = make("pre", "cookbook-got", result.output || "");
    if (result.output) box.appendChild(got);
    else { got.hidden = true; box.appendChild(got); }
    if (result.stderr) box.appendChild(make("pre", "cookbook-stderr", result.stderr));
    if (result.traceback) {
      // As the page shows it: the exception's own lines, the stack folded away.
      var frames = make("details", "cookbook-frames");
      frames.appendChild(make("summary", null, "Traceback (most recent call last): …"));
      frames.appendChild(make("pre", "cookbook-traceback", result.traceback));
      box.appendChild(frames);
      box.appendChild(make("pre", "cookbook-exception", result.exception));
    }
    if (result.status === "differ") {
      var want = make("div", "cookbook-want");
      want.appendChild(make("p", null, "The page shows:"));
      var shows = example.exc_msg !== null ? "Traceback (most recent call last):\n...\n" + example.exc_msg : example.want;
      want.appendChild(make("pre", null, shows || "(no output)"));
      box.appendChild(want);
    }
    return box;
  }

  function show(result, target, touched) {
    var unit = units.find(function (u) { return u.block === result.block; });
    var entry = bars[unit.host];
    var output = entry.output;
    if (unit.visible) {
      output.textContent = "";
      entry.box = output;
      if (unit.index !== target) {
        // Run first because a later example needs it: shown folded.
        var details = make("details", "cookbook-earlier");
        details.appendChild(make("summary", null, "Output"));
        output.appendChild(details);
        entry.box = details;
      }
      entry.box.appendChild(make("p", "cookbook-output-head",
        "In your browser: Python " + runtime.python + ", SQLAlchemy " + runtime.sqlalchemy + ", SQLite " + runtime.sqlite));
    }
    var edited = unit.visible && entry.editor !== null;
    result.results.forEach(function (r, i) {
      entry.box.appendChild(renderResult(unit, edited ? null : unit.examples[i], r));
    });
    output.hidden = false;
    output.dataset.state = "done";
    if (touched.indexOf(unit.host) < 0) touched.push(unit.host);
  }

  function finish(touched, index) {
    touched.forEach(function (i) {
      var entry = bars[i];
      var printed = entry.output.querySelector(".cookbook-got:not([hidden]), .cookbook-exception, .cookbook-stderr, .cookbook-source");
      if (!printed) entry.box.appendChild(make("p", "cookbook-check-note", "Ran; it prints nothing."));
      var text = summary(i);
      var details = entry.output.querySelector("details.cookbook-earlier > summary");
      if (details) details.textContent = text + " (run first, for the example at line " + firstLine(index) + ")";
      if (i !== index) say(i, "");
    });
  }

  function firstLine(index) {
    var unit = units[bars[index].unit];
    var first = unit.examples[0];
    return first.kind === "code" ? first.line + 1 : first.line;
  }

  // --- Editing ----------------------------------------------------------------------------------

  function toggleEdit(index) {
    var entry = bars[index];
    var block = shown[index];
    if (entry.editor) {
      entry.editor.remove();
      entry.editor = null;
      block.style.display = "";
      entry.edit.textContent = "Edit";
      entry.edit.title = "Change this example, then run it";
      if (entry.unit < done) stale = true;
      say(index, "The page's code is back");
      return;
    }
    loadData().then(function () {
      var unit = units[entry.unit];
      var code = unit.examples.map(function (e) { return e.source.replace(/\n?$/, "\n"); }).join("");
      var editor = make("textarea", "cookbook-editor");
      editor.value = code;
      editor.rows = Math.min(30, code.split("\n").length);
      editor.spellcheck = false;
      editor.setAttribute("autocapitalize", "off");
      editor.setAttribute("autocomplete", "off");
      editor.setAttribute("aria-label", "Python code of this example (Ctrl+Enter runs it)");
      editor.addEventListener("input", function () { if (entry.unit < done) stale = true; });
      editor.addEventListener("keydown", function (event) {
        if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
          event.preventDefault();
          runTo(index);
        }
      });
      block.style.display = "none"; // the theme's display rule would win over the hidden attribute
      block.parentNode.insertBefore(editor, block);
      entry.editor = editor;
      entry.edit.textContent = "Undo edits";
      entry.edit.title = "Put back the page's code";
      if (entry.unit < done) stale = true;
      say(index, "Editing: Ctrl+Enter or Run runs your code");
      editor.focus();
    }).catch(function (error) {
      say(index, error.message);
    });
  }

  return { runTo: runTo, toggleEdit: toggleEdit };
}
