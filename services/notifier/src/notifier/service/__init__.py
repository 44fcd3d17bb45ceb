"""The notifier's use cases: copies of users, recipes and ratings kept from their events
(``copies``), a user's preferences and one-click unsubscribe (``preferences``), and which
digests are due (``planning``).

The transaction rule of every service: a use case never commits, begins or rolls back. It works
in the session its caller passes (keyword-only ``session``): the API route opens the transaction
(``async with session.begin()``), a consumer handler runs in the consumer's transaction (its
inbox row and every effect commit together), and ``notifier send-digest`` opens its own. So one
use case called from another, or from a handler, never commits its caller's work early.
Sending mail is not a use case: ``notifier.mail.dispatch`` is a background dispatcher and owns
its transactions (claim, then record) on either side of the slow SMTP calls.
"""
