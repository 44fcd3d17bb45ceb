"""Who publishes each event and who consumes it: the source of the AsyncAPI document."""

from typing import Final

#: routing key → (producer, consumers)
EVENT_FLOWS: Final[dict[str, tuple[str, tuple[str, ...]]]] = {
    "user.registered": ("auth", ("notifier", "backup")),
    "user.updated": ("auth", ("recipes", "notifier", "backup")),
    "user.deleted": ("auth", ("recipes", "notifier", "backup")),
    "recipe.created": ("recipes", ("media", "notifier")),
    "recipe.updated": ("recipes", ("media",)),
    "recipe.deleted": ("recipes", ("media", "notifier")),
    "rating.added": ("recipes", ("notifier",)),
    "rating.removed": ("recipes", ()),
    "recipe.image_ready": ("media", ("recipes",)),
    "recipe.image_failed": ("media", ("recipes",)),
    "schedule.tick": ("notifier, backup (their own tick emitters)", ("notifier", "backup")),
}
