// The cookbook's Python, in a Web Worker: Pyodide (self-hosted), SQLAlchemy, and the page's examples.
//
// session.mjs starts this worker on the reader's first Run and talks to it with messages:
//   -> {type: "init", pyodide: "<url of _pyodide/KEY/>", runner: "<url of cookbook_runner.py>", lock: "<its hash>"}
//   <- {type: "status", text}, then {type: "ready", versions} or {type: "failed", error}
//   -> {type: "run", id, page, fresh, blocks: [...]}
//   <- {type: "result", id, result} for each block as soon as it has run, then {type: "done", id}
// Python runs here, so the page stays responsive; a run that never ends is stopped by the page
// terminating this worker.

let runner = null;
const queue = [];
let busy = false;

const post = (message) => self.postMessage(message);

self.onmessage = (event) => {
  queue.push(event.data);
  pump();
};

async function pump() {
  if (busy) return;
  busy = true;
  try {
    while (queue.length) {
      const message = queue.shift();
      try {
        if (message.type === "init") await init(message);
        else if (message.type === "run") run(message);
      } catch (error) {
        post({ type: "failed", id: message.id, error: String((error && error.message) || error) });
        if (message.type === "init") return; // nothing else can run
      }
    }
  } finally {
    busy = false;
  }
}

// When the browser refuses pyodide.asm.wasm (a server sending it as anything but
// application/wasm, say), Pyodide only warns on the console and waits for ever.  Catch the
// warning and fail with its reason instead.
function wasmFailure() {
  return new Promise((_, reject) => {
    const warn = console.warn;
    let next = false;
    console.warn = (...args) => {
      if (next) {
        next = false;
        let text = String((args[0] && args[0].message) || args[0]);
        if (/MIME/i.test(text)) text += " The server must send .wasm files as application/wasm.";
        reject(new Error("Python could not start: " + text));
      } else if (args[0] === "wasm instantiation failed!") {
        next = true;
      } else {
        warn.apply(console, args);
      }
    };
  });
}

async function init({ pyodide: base, runner: runnerUrl, lock }) {
  post({ type: "status", text: "Starting Python" });
  const source = fetch(runnerUrl).then((response) => {
    if (!response.ok) throw new Error(`${runnerUrl}: HTTP ${response.status}`);
    return response.text();
  });
  const { loadPyodide } = await import(base + "pyodide.mjs");
  const pyodide = await Promise.race([
    wasmFailure(),
    loadPyodide({
      indexURL: base,
      lockFileURL: base + "pyodide-lock.json?v=" + lock,
      stdout: () => {},
      stderr: () => {},
    }),
  ]);
  post({ type: "status", text: "Loading SQLAlchemy" });
  await pyodide.loadPackage(["sqlalchemy", "sqlalchemy-cookbook", "sybil"], { messageCallback: () => {}, errorCallback: (text) => post({ type: "status", text }) });
  pyodide.FS.mkdirTree("/lib/cookbook");
  pyodide.FS.writeFile("/lib/cookbook/cookbook_runner.py", await source);
  pyodide.runPython("import sys; sys.path.append('/lib/cookbook')");
  runner = pyodide.pyimport("cookbook_runner");
  const versions = JSON.parse(runner.versions());
  post({ type: "ready", versions });
}

function run({ id, page, fresh, blocks }) {
  if (runner === null) throw new Error("Python has not started");
  if (fresh) runner.start(page);
  for (const block of blocks) {
    const result = JSON.parse(runner.run_block(JSON.stringify({ page, ...block })));
    post({ type: "result", id, result });
  }
  post({ type: "done", id });
}
