/*
 * Search ranking for the cookbook (conf.py: html_search_scorer).
 *
 * Sphinx scores a page by its single best-matching word, so every page with one of the
 * query's words in a heading ties with every other.  Readers type a question or an error
 * message; a page whose title holds more of the query's words is the better answer, so each
 * of them adds to the page's score.  Sphinx's own weights are kept.
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
  // added for each query word (stemmed, stopwords left out) in the page's title
  titleWord: 10,

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
    for (const stem of Scorer._stems(query)) if (inTitle.has(stem)) words += 1;
    return score + words * Scorer.titleWord;
  },
};

/*
 * A pasted error message carries words no page can hold: an object's address
 * (`<User at 0x7f3a2c1e5d90>`), the reader's own table names and values.  Sphinx
 * returns only pages that contain every word of the query, so one such word empties
 * the results.  Before the query runs, words the index does not know at all (not even
 * as part of a longer word, as Sphinx's own partial matching finds them) are left out;
 * every word the site knows is still required.  (Sphinx puts this file into
 * language_data.js, which loads after searchtools.js and before the search runs.)
 */
(() => {
  if (typeof Search === "undefined") return;
  const parse = Search._parseQuery;
  const known = (word) => {
    const index = Search._index;
    if (!index) return true;
    const has = (terms) =>
      Object.prototype.hasOwnProperty.call(terms, word) ||
      (word.length > 2 && Object.keys(terms).some((term) => term.includes(word)));
    return has(index.terms) || has(index.titleterms);
  };
  Search._parseQuery = (query) => {
    const parsed = parse(query);
    const searchTerms = parsed[1];
    const kept = [...searchTerms].filter(known);
    if (kept.length > 0 && kept.length < searchTerms.size) {
      searchTerms.clear();
      kept.forEach((word) => searchTerms.add(word));
    }
    return parsed;
  };
})();
