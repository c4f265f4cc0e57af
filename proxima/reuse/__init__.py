"""Never compute the same thing twice: each region keeps its blocks' exact partials next
to its data (``store``), and the client region keeps whole answers by request and assets
(``results``).
"""
