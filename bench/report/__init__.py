"""``bench report``: the run store turned into leaderboards (CSV, Markdown, LaTeX) and a static HTML site."""
