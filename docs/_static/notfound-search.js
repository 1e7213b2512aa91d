/*
 * The 404 page's search box (conf.py: notfound_context) gets the words of the missing address:
 * /en/latest/transactions/pending-rolback.html -> "pending rolback".  The site's root is where
 * the form's search page is, so a language/version prefix is never taken for a word.
 */
(() => {
  const form = document.querySelector("form.notfound-search");
  const root = new URL(form.action).pathname.replace(/search\.html$/, "");
  let path = location.pathname;
  try {
    path = decodeURIComponent(path);
  } catch {} // a malformed %-escape: its words as written
  if (path.startsWith(root)) path = path.slice(root.length);
  const parts = path.split("/").filter((part) => part && !/^index\.html?$/.test(part));
  const name = (parts.pop() || "").replace(/\.\w+$/, "");
  form.elements.q.value = name.split(/[^\p{L}\p{N}]+/u).filter(Boolean).join(" ");
})();
