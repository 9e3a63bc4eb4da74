// MathJax 3 for pymdownx.arithmatex (generic mode), as in the mkdocs-material docs,
// and for the $...$ math of the notebooks' Markdown cells (rendered by mkdocs-jupyter).
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"], ["$", "$"]],
    displayMath: [["\\[", "\\]"], ["$$", "$$"]],
    processEscapes: true,
    processEnvironments: true,
  },
  // Unlike the mkdocs-material recipe, the whole page is searched (not only the
  // `arithmatex` spans), because the notebooks' math is not wrapped in such spans.
  // Code (pre, code) is skipped by MathJax; a literal dollar sign in prose is
  // written `\$`.
};

document$.subscribe(() => {
  MathJax.startup.output.clearCache();
  MathJax.typesetClear();
  MathJax.texReset();
  MathJax.typesetPromise();
});
