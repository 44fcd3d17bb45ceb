"""drf-baseline: what a user would pick instead for the HTTP paths (issue 20).

A minimal Django REST Framework app on the recipes API's own tables, doing the same database work:
the list is DRF's page-number pagination (a count and one page, same order and page size), the
detail one row by primary key, a rating the recipes service's own rating statement (upsert and
aggregates by the difference) in a transaction. Configured as Django's deployment checklist and
DRF's documentation recommend for production: ``DEBUG = False``, persistent connections
(``CONN_MAX_AGE``, with health checks), the JSON renderer only (no browsable API), no session or
CSRF middleware, no authentication classes on these views (the customer comes from the
``X-User-Id`` header the bench sends; the recipes API verifies a signed token, so this baseline
does less work than ours). Served by gunicorn with sync workers, as many as the recipes API's
uvicorn processes:

    BENCH_DRF_DSN=postgresql://... gunicorn --workers 2 --chdir bench/baselines drf_app:application

Runs in the bench's own venv (requirements.txt), never in the workspace.
"""

import os
from urllib.parse import urlsplit

import django
from django.conf import settings

_dsn = urlsplit(os.environ["BENCH_DRF_DSN"])
settings.configure(
    DEBUG=False,
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    SECRET_KEY=os.environ.get("BENCH_DRF_SECRET", "bench-only-not-a-secret"),
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=["django.contrib.contenttypes", "rest_framework"],
    MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
    USE_TZ=True,
    DATABASES={
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": _dsn.path.lstrip("/"),
            "USER": _dsn.username or "postgres",
            "PASSWORD": _dsn.password or "",
            "HOST": _dsn.hostname or "127.0.0.1",
            "PORT": str(_dsn.port or 5432),
            "CONN_MAX_AGE": 600,
            "CONN_HEALTH_CHECKS": True,
        }
    },
    REST_FRAMEWORK={
        "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
        "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
        "DEFAULT_AUTHENTICATION_CLASSES": [],
        "DEFAULT_PERMISSION_CLASSES": [],
        "UNAUTHENTICATED_USER": None,
        "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
        "PAGE_SIZE": 10,
    },
    LOGGING_CONFIG=None,
)
django.setup()

from django.db import connection, models, transaction  # noqa: E402
from django.urls import path  # noqa: E402
from rest_framework import generics, serializers  # noqa: E402
from rest_framework.request import Request  # noqa: E402
from rest_framework.response import Response  # noqa: E402
from rest_framework.views import APIView  # noqa: E402


class Recipe(models.Model):
    """The recipes service's table, read as it is (Django does not manage it)."""

    seller_id = models.BigIntegerField()
    seller_username = models.CharField(max_length=150)
    title = models.CharField(max_length=200)
    description = models.TextField()
    ingredients = models.TextField()
    instructions = models.TextField()
    resized_image_url = models.TextField(null=True)
    avg_rating = models.FloatField()
    rating_count = models.IntegerField()
    image_status = models.CharField(max_length=16)
    image_version = models.IntegerField()
    image_variants = models.JSONField(null=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        app_label = "bench"
        db_table = "recipes"
        managed = False


class RecipeSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    class Meta:
        model = Recipe
        fields = [
            "id",
            "title",
            "description",
            "ingredients",
            "instructions",
            "resized_image_url",
            "avg_rating",
            "rating_count",
            "seller_id",
            "seller_username",
            "created_at",
            "updated_at",
            "image_status",
            "image_version",
            "image_variants",
        ]


class RatingSerializer(serializers.Serializer):  # type: ignore[type-arg]
    score = serializers.IntegerField(min_value=1, max_value=5)
    comment = serializers.CharField(required=False, allow_blank=True, default="")


class RecipeList(generics.ListAPIView):  # type: ignore[type-arg]
    queryset = Recipe.objects.order_by("-created_at", "-id")
    serializer_class = RecipeSerializer


class RecipeDetail(generics.RetrieveAPIView):  # type: ignore[type-arg]
    queryset = Recipe.objects.all()
    serializer_class = RecipeSerializer


#: The recipes service's rating statement without its outbox row (no events here).
RATE = """
WITH upserted AS (
    INSERT INTO ratings AS r
        (recipe_id, user_id, username, score, comment, previous_score, created_at, updated_at)
    SELECT id, %(user_id)s, %(username)s, %(score)s, %(comment)s, NULL, now(), now()
    FROM recipes WHERE id = %(recipe_id)s
    ON CONFLICT ON CONSTRAINT uq_ratings_recipe_user DO UPDATE SET
        score = EXCLUDED.score, comment = EXCLUDED.comment, previous_score = r.score,
        updated_at = EXCLUDED.updated_at
    RETURNING r.id, r.recipe_id, r.score, r.previous_score
),
change AS (
    SELECT recipe_id, id, score - coalesce(previous_score, 0) AS delta,
           CASE WHEN previous_score IS NULL THEN 1 ELSE 0 END AS added
    FROM upserted
)
UPDATE recipes SET
    rating_sum = rating_sum + change.delta,
    rating_count = rating_count + change.added,
    avg_rating = coalesce(
        (rating_sum + change.delta)::float8 / nullif(rating_count + change.added, 0), 0
    )
FROM change WHERE recipes.id = change.recipe_id
RETURNING change.id, recipes.avg_rating, recipes.rating_count
"""


class RateRecipe(APIView):
    def post(self, request: Request, pk: int) -> Response:
        body = RatingSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        user_id = int(request.headers["X-User-Id"])
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                RATE,
                {
                    "recipe_id": pk,
                    "user_id": user_id,
                    "username": f"customer{user_id}",
                    **body.validated_data,
                },
            )
            row = cursor.fetchone()
        if row is None:
            return Response({"detail": "Not found."}, status=404)
        return Response(
            {"id": row[0], "recipe_id": pk, "avg_rating": row[1], "rating_count": row[2]}
        )


urlpatterns = [
    path("recipes/", RecipeList.as_view()),
    path("recipes/<int:pk>/", RecipeDetail.as_view()),
    path("recipes/<int:pk>/rate/", RateRecipe.as_view()),
]

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
