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
 * A pasted error message carries words no page holds: an object's address
 * (`<User at 0x7f3a2c1e5d90>`), the reader's own table names and values.  Sphinx
 * returns only pages that contain every word of the query, so one such word empties
 * the results.  When no page holds every word, the pages that hold the most of them
 * (found as Sphinx finds words, whole or as part of a longer one) are searched for
 * with the words each holds, and the results are merged, more words ranking higher.
 * A query some page answers in full is searched for as Sphinx always does.
 * (Sphinx puts this file into language_data.js, which loads after searchtools.js and
 * before the search runs.)
 */
(() => {
  if (typeof Search === "undefined") return;
  const search = Search.performTermsSearch;
  // Each word of the query a page holds beyond the fewest any result holds adds this.
  const extraWord = 5;
  const widest = 8; // how many of the best-covered pages' word sets are searched for
  const own = (object, key) => Object.prototype.hasOwnProperty.call(object, key);
  const filesOf = (index, word) => {
    const files = new Set();
    for (const terms of [index.terms, index.titleterms]) {
      const add = (found) => [found].flat().forEach((file) => files.add(file));
      if (own(terms, word)) add(terms[word]);
      else if (word.length > 2)
        for (const term of Object.keys(terms)) if (term.includes(word)) add(terms[term]);
    }
    return files;
  };
  Search.performTermsSearch = (searchTerms, excludedTerms) => {
    const index = Search._index;
    const held = new Map(); // file -> the query's words it holds
    for (const word of searchTerms)
      for (const file of filesOf(index, word)) held.set(file, [...(held.get(file) || []), word]);
    const coverage = [...held.values()].sort((a, b) => b.length - a.length);
    if (coverage.length === 0 || coverage[0].length === searchTerms.size)
      return search(searchTerms, excludedTerms);
    const sets = new Map(); // the distinct word sets of the best-covered pages
    for (const words of coverage) {
      if (sets.size >= widest || words.length < 2) break;
      sets.set(words.join(" "), words);
    }
    const fewest = Math.min(...[...sets.values()].map((words) => words.length));
    const merged = new Map();
    for (const words of sets.values())
      for (const result of search(new Set(words), excludedTerms)) {
        const key = `${result[0]}#${result[2]}`;
        const scored = [...result];
        scored[4] += (words.length - fewest) * extraWord;
        if (!merged.has(key) || merged.get(key)[4] < scored[4]) merged.set(key, scored);
      }
    return [...merged.values()];
  };
})();
