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
