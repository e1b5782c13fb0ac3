"""The API's operations on ``gradlight.v1`` messages, shared by the gRPC servicer and the HTTP
endpoints: look the model up, run its attributor, convert the results back."""

from __future__ import annotations

from gradlight.runtime import messages
from gradlight.runtime.models import ModelRegistry
from gradlight.v1 import gradlight_pb2 as pb


class AttributorApi:
    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry

    async def predict(self, request: pb.PredictRequest) -> pb.PredictResponse:
        model = self.registry.get(request.model)
        results = await model.attributor.run(request.texts, messages.predict_options(request))
        return pb.PredictResponse(model=model.name, results=messages.results(results))

    async def attribute(self, request: pb.AttributeRequest) -> pb.AttributeResponse:
        model = self.registry.get(request.model)
        results = await model.attributor.run(request.texts, messages.attribute_options(request))
        return pb.AttributeResponse(model=model.name, results=messages.results(results))

    def list_models(self) -> pb.ListModelsResponse:
        models = [messages.model_info(model) for model in self.registry.models.values()]
        return pb.ListModelsResponse(models=models)
