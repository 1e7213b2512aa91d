/*
 * Search ranking for the cookbook (conf.py: html_search_scorer).
 *
 * Sphinx scores a page by its single best-matching word, so every page with one of the
 * query's words in a heading ties with every other.  Readers type a question or paste an
 * error message; a page whose title holds more of the query's words (whole, or as part of a
 * longer word) is the better answer, so each of them adds to the page's score, weighted as the
 * search below weighs words: a word every page holds ("sqlalchemy", "session") adds nothing, a
 * rare one ("FlushError") the most.  Sphinx's own weights are kept.
 */
var Scorer = {
  objNameMatch: 11,
  objPartialMatch: 6,
  objPrio: { 0: 15, 1: 5, 2: -5 },
  objPrioDefault: 0,
  title: 15,
  partialTitle: 7,
  term: 5,
  partialTerm: 2,
  // added for each query word (stemmed, stopwords left out) in the page's title, times its weight
  titleWord: 10,
  // the share of that for a query word that is part of a word of the title ("rollback" in
  // "PendingRollbackError"), as Sphinx matches words
  partTitleWord: 0.5,
  // each query word's weight, from 0 (on every page) to 1 (on one): set by the search below
  weights: new Map(),

  _stems: (text) => {
    const stemmer = new Stemmer();
    return new Set(
      splitQuery(text.toLowerCase().trim())
        .filter((word) => !stopwords.has(word))
        .map((word) => stemmer.stemWord(word)),
    );
  },

  score: (result) => {
    const [docname, title, anchor, descr, score, filename, kind] = result;
    const query = new URLSearchParams(window.location.search).get("q") || "";
    const index = Search._index;
    const file = index ? index.docnames.indexOf(docname) : -1;
    const pageTitle = file >= 0 ? index.titles[file] : title;
    const inTitle = Scorer._stems(pageTitle);
    let words = 0;
    for (const stem of Scorer._stems(query)) {
      const whole = inTitle.has(stem);
      const part = !whole && stem.length > 2 && [...inTitle].some((word) => word.includes(stem));
      const weight = Scorer.weights.get(stem) ?? 0; // a word Sphinx does not search for weighs nothing
      if (whole || part) words += (whole ? 1 : Scorer.partTitleWord) * weight;
    }
    return score + words * Scorer.titleWord;
  },
};

/*
 * Sphinx lists only the pages that hold every word of the query, so a pasted error message,
 * which carries words no page holds (an object's address, the reader's own table names and
 * values), finds nothing, and a symptom in a reader's words finds only the pages that
 * happen to hold every one of them.
 *
 * Here each word of the query is weighted by how few pages hold it (found as Sphinx finds
 * words, whole or as part of a longer one): an exception's class or an error code outweighs
 * "sqlalchemy", "session" and "table"; a word no page holds, or the class named in an
 * object's repr (`<Customer at 0x7f3a2c1e5d90>`: the reader's own), weighs nothing.  Each
 * page that holds at least half the weight the best page holds is listed, with Sphinx's
 * score for its best word raised by the weight it holds: the pages that hold every word
 * come first, ranked among themselves as Sphinx ranks them.
 *
 * Words cannot tell the page that shows "A transaction is already begun on this Session."
 * from the four that use the same words.  Each section that shows an error has an index
 * entry for it (cookbook_site.errors: its class, and its message with what differs from one
 * case to the next elided to `…`, as the Errors page lists it); a query that holds an
 * entry's text, each part in order, lists that section, scored as Sphinx scores an index
 * entry that holds the query: by how much of the query the entry's text covers.
 * (Sphinx puts this file into language_data.js, which loads after searchtools.js and
 * before the search runs.)
 */
(() => {
  if (typeof Search === "undefined") return;
  const held = 20; // added to a page's score for each unit of weight it holds
  const own = (object, key) => Object.prototype.hasOwnProperty.call(object, key);
  // file -> Sphinx's score for the word on that page (whole or partial, in a title or the text)
  const found = (index, word) => {
    const scores = new Map();
    const add = (files, score) =>
      [files].flat().forEach((file) => scores.set(file, Math.max(scores.get(file) || 0, score)));
    for (const [terms, whole, partial] of [
      [index.terms, Scorer.term, Scorer.partialTerm],
      [index.titleterms, Scorer.title, Scorer.partialTitle],
    ])
      if (own(terms, word)) add(terms[word], whole);
      else if (word.length > 2)
        for (const term of Object.keys(terms)) if (term.includes(word)) add(terms[term], partial);
    return scores;
  };
  // For each page, a section whose error (a main index entry) the query holds part for part:
  // the one whose entry covers the most of the query.
  const shown = (index, query) => {
    const text = query.toLowerCase().replace(/\s+/g, " ");
    const results = new Map(); // file -> its result
    for (const [entry, found] of Object.entries(index.indexentries)) {
      const parts = entry.replace(/\s+/g, " ").split("…");
      if (!/\w/.test(parts.join(""))) continue;
      let at = 0;
      for (const part of parts) {
        const start = at < 0 ? -1 : text.indexOf(part, at);
        at = start < 0 ? -1 : start + part.length;
      }
      if (at < 0) continue;
      const score = Math.round((100 * parts.join("").length) / text.length);
      for (const [file, id, main] of found)
        if (main && !(results.get(file)?.[4] >= score))
          results.set(file, [
            index.docnames[file],
            index.titles[file],
            id ? `#${id}` : "",
            null,
            score,
            index.filenames[file],
            SearchResultKind.index,
          ]);
    }
    return [...results.values()];
  };
  Search.performTermsSearch = (searchTerms, excludedTerms) => {
    const index = Search._index;
    const documents = index.docnames.length;
    const query = new URLSearchParams(window.location.search).get("q") || "";
    const reprs = [...query.matchAll(/<([\w.]+) at 0x[0-9a-f]+>/gi)];
    const theirs = Scorer._stems(reprs.map((repr) => repr[1]).join(" "));
    const sphinx = new Map(); // file -> Sphinx's score for its best word
    const weights = new Map(); // file -> the weight of the query's words it holds
    Scorer.weights = new Map();
    for (const word of searchTerms) {
      const scores = found(index, word);
      const weight = scores.size && !theirs.has(word) ? Math.log(documents / scores.size) / Math.log(documents) : 0;
      Scorer.weights.set(word, weight);
      for (const [file, score] of scores) {
        sphinx.set(file, Math.max(sphinx.get(file) || 0, score));
        weights.set(file, (weights.get(file) || 0) + weight);
      }
    }
    for (const word of excludedTerms) for (const file of found(index, word).keys()) weights.delete(file);
    const most = Math.max(0, ...weights.values());
    const pages = [...weights]
      .filter(([file, weight]) => weight > 0 && weight >= most / 2)
      .map(([file, weight]) => [
        index.docnames[file],
        index.titles[file],
        "",
        null,
        sphinx.get(file) + held * weight,
        index.filenames[file],
        SearchResultKind.text,
      ]);
    return [...pages, ...shown(index, query)];
  };
})();
