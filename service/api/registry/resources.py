"""Views of /v1/models/{name}/aliases, /versions (ordered) and /compare."""

from flask.views import MethodView

from service.api.blueprint import Blueprint
from service.api.body import Body
from service.api.models.resources import predict, predict_contract
from service.api.models.schemas import ModelVersionSchema
from service.api.registry.schemas import (
    AliasSchema,
    AliasSetSchema,
    CompareArgsSchema,
    ComparisonSchema,
    VersionOrderArgsSchema,
)
from service.api.services import services, tenant
from service.api.spec import link, links, problem_doc
from service.usecases import aliases, compare

blp = Blueprint(
    "registry", __name__, url_prefix="/v1/models", description="Model aliases and comparison"
)


_ALIAS = {"name": "$response.body#/name", "alias": "$response.body#/alias"}
#: Where a set alias leads: reading it, predicting and evaluating through it, deleting it.
ALIAS_LINKS = {
    "GetAlias": link("/v1/models/{name}/aliases/{alias}", **_ALIAS),
    "PredictAlias": link("/v1/models/{name}/aliases/{alias}/predict", "post", **_ALIAS),
    "EvaluateAlias": link("/v1/models/{name}/aliases/{alias}/evaluate", "post", **_ALIAS),
    "DeleteAlias": link("/v1/models/{name}/aliases/{alias}", "delete", **_ALIAS),
}


@blp.route("/<string:name>/versions")
class Versions(MethodView):
    @blp.arguments(VersionOrderArgsSchema, location="query")
    @blp.response(200, ModelVersionSchema(many=True))
    @blp.alt_response(400, **problem_doc("Unknown order_by"))
    @blp.alt_response(404, **problem_doc("No such model"))
    def get(self, args, name):
        """List a model's versions ordered by a final metric, created_at or version"""
        return compare.ordered_versions(services().database, tenant(), name, args["order_by"])


@blp.route("/<string:name>/compare")
class Compare(MethodView):
    @blp.arguments(CompareArgsSchema, location="query")
    @blp.response(200, ComparisonSchema)
    @blp.alt_response(400, **problem_doc("Fewer than 2 or more than 20 versions"))
    @blp.alt_response(404, **problem_doc("No such model, version or alias"))
    def get(self, args, name):
        """Compare versions side by side: final metrics, hyperparameters, what differs"""
        refs = args["versions"].split(",")
        return compare.compare(services().database, tenant(), name, refs)


@blp.route("/<string:name>/aliases/<string:alias>")
class AliasView(MethodView):
    @blp.response(200, AliasSchema)
    @blp.alt_response(404, **problem_doc("No such model or alias"))
    def get(self, name, alias):
        """Get the version an alias points to"""
        return aliases.get_alias(services().database, tenant(), name, alias)

    @blp.arguments(AliasSetSchema)
    @blp.response(200, AliasSchema)
    @blp.doc(**links(200, **ALIAS_LINKS))
    @blp.alt_response(400, **problem_doc("Invalid alias name or version"))
    @blp.alt_response(404, **problem_doc("No such model version"))
    def put(self, body, name, alias):
        """Point an alias at a version (created, or moved atomically)"""
        return aliases.set_alias(services().database, tenant(), name, alias, body["version"])

    @blp.response(204)
    @blp.alt_response(404, **problem_doc("No such model or alias"))
    def delete(self, name, alias):
        """Delete an alias (the version stays)"""
        aliases.delete_alias(services().database, tenant(), name, alias)


@blp.route("/<string:name>/aliases/<string:alias>/predict")
class PredictAlias(MethodView):
    @predict_contract("No such model or alias")
    def post(self, body: Body, name, alias):
        """Predict class probabilities with the version an alias points to"""
        aliases.check_alias(alias)
        version = aliases.resolve_version(
            services().database, tenant(), name, alias, services().models
        )
        return predict(body, name, version)
