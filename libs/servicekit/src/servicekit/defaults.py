"""Every default of the shared library, written once (issue 19).

``ServiceSettings`` offers them as the environment's defaults; the bus, the consumer, the
outbox relay, the pool and the runtime use them when a caller passes nothing. They used to be
written two or three times (the retry delays in the bus and the settings, a prefetch of 32 in
three places) and could drift apart. Plain constants: importing this module loads nothing, so
the settings read them without loading the bus or the database.
"""

# The broker
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
#: RabbitMQ's own ``max_message_size`` default (3.8 on): a bigger body closes the channel.
DEFAULT_MAX_MESSAGE_BYTES = 128 * 1024 * 1024

# Retries (``servicekit._topology`` declares the queues that make them)
#: Seconds before each retry of a failed event; after the last one's attempt fails, the DLQ.
DEFAULT_RETRY_DELAYS: tuple[float, ...] = (1.0, 5.0, 30.0, 120.0)
#: Deliveries without an ack (consumer crashes) before the broker dead-letters by itself.
DEFAULT_DELIVERY_LIMIT = 20

# Consumers and the outbox relay
#: Events one consumer holds unacknowledged at once.
DEFAULT_PREFETCH = 32
#: Most events a service's consumer commits in one transaction (``servicekit._consumer``).
#: ``Consumer`` itself defaults to 1, one transaction per event, for callers that say nothing.
DEFAULT_CONSUMER_BATCH_SIZE = 16
#: Outbox rows the relay publishes per pass.
DEFAULT_OUTBOX_BATCH_SIZE = 200
#: Seconds between outbox polls (a PostgreSQL NOTIFY wakes the relay sooner).
DEFAULT_OUTBOX_POLL_INTERVAL = 1.0

#: Dead letters or quarantined outbox rows the commands show at once.
DEFAULT_PEEK_LIMIT = 20

# The inbox (``servicekit._inbox`` says why these lengths)
#: Seconds an applied event's id is kept to recognise a redelivery: seven days.
DEFAULT_INBOX_RETENTION = 7 * 24 * 3600.0
#: The shortest retention accepted: a day, beyond any redelivery.
MIN_INBOX_RETENTION = 24 * 3600.0

# The database pool (``servicekit._db``)
#: Most connections an engine holds (per process) unless its caller says otherwise. Two cores
#: keep at most a handful of queries running at once; more connections only queue inside
#: PostgreSQL, and eight processes a platform must fit ``max_connections`` (README).
DEFAULT_POOL_SIZE = 5
#: Seconds a connection may sit unused in the pool before it is closed.
DEFAULT_IDLE_TIMEOUT = 60.0
#: Seconds a checkout waits for a connection before it fails (a 503 in an API).
DEFAULT_POOL_TIMEOUT = 30.0

# Access tokens: the auth service and every verifier agree on these.
DEFAULT_JWT_ISSUER = "recipe-platform-auth"
DEFAULT_JWT_AUDIENCE = "recipe-platform"
DEFAULT_JWKS_URL = "http://127.0.0.1:8001/api/auth/.well-known/jwks.json"

# A worker's health and metrics server, and its logs
DEFAULT_HEALTH_HOST = "127.0.0.1"
DEFAULT_LOG_LEVEL = "INFO"
