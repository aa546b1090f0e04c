"""Transitional: what this module held now lives in modules named by purpose. Import from
them; this re-export goes once the branches that still import it have merged.

- ``service.api.services``: Services, services(), tenant()
- ``service.api.schemas``: BaseSchema, PageArgsSchema, ProblemSchema, MODEL_NAME, DATASET_NAME
- ``service.api.spec``: Api, problem_doc
- ``service.api.blueprint``: Blueprint (with ``Blueprint.body``)
- ``service.api.body``: Body, media_type (was body_kind), json_body, parse_json,
  filename_stem, form_name
"""

from service.api.blueprint import Blueprint
from service.api.body import filename_stem, form_name, json_body
from service.api.body import media_type as body_kind
from service.api.schemas import DATASET_NAME, MODEL_NAME, BaseSchema, PageArgsSchema, ProblemSchema
from service.api.services import Services, services, tenant
from service.api.spec import Api, problem_doc

__all__ = [
    "DATASET_NAME",
    "MODEL_NAME",
    "Api",
    "BaseSchema",
    "Blueprint",
    "PageArgsSchema",
    "ProblemSchema",
    "Services",
    "body_kind",
    "filename_stem",
    "form_name",
    "json_body",
    "problem_doc",
    "services",
    "tenant",
]
