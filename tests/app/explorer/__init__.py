"""The explorer page at / in a real browser: Debian's headless Chromium, driven by Playwright,
against the real server (`python -m app` on a loopback port).

What a person sees is checked against exact arithmetic and the model cards: the answer digit
under digit, a heatmap of 10 x (digits + 1) cells whose chosen cells are the model's digits,
counter-post's flags and its known failure, counting that streams and stops where asked, the
keyboard alone, and a phone's width. Every request the page makes is recorded, and only this
service may answer. Each state's screenshot is saved under test-artifacts/explorer/; with
COUNTER_WRITE_SCREENSHOT=1 the README's picture, docs/explorer.png, is retaken too.
"""
