"""The mail machinery: what a digest says (``content``), composing it from the templates
(``compose``, ``templates/``) into bytes (``mime``) with an unsubscribe link (``unsubscribe``),
sending it (``transport``, paced by ``rate_limit``) and the background dispatcher that claims,
sends and records planned mail (``dispatch``; it owns its transactions, see its docstring).
"""
