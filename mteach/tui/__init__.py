"""The teaching studio (``mteach tui``): a Textual app over the same core as the CLI.

``session`` holds the state without any widget; ``app`` composes the widgets of
``components`` and routes their messages.
"""
