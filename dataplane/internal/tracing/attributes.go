package tracing

import "go.opentelemetry.io/otel/attribute"

// Attribute keys of the data plane's spans. The gen_ai.* keys follow
// OpenTelemetry's semantic conventions for generative AI, the http.* and
// error.type keys its HTTP conventions. None of them ever carries a token, a key,
// a prompt or an answer.
const (
	// GenAISystem is the provider kind of the deployment: openai, anthropic, ollama.
	GenAISystem = attribute.Key("gen_ai.system")
	// GenAIOperationName is chat, text_completion or embeddings (Anthropic's
	// Messages API is chat).
	GenAIOperationName = attribute.Key("gen_ai.operation.name")
	// GenAIRequestModel is the model asked for: the client's on the server span
	// (as the policy names it, "(unknown)" for any other), the deployment's
	// upstream model on an attempt.
	GenAIRequestModel = attribute.Key("gen_ai.request.model")
	// GenAIResponseModel is the upstream model of the deployment that answered.
	GenAIResponseModel = attribute.Key("gen_ai.response.model")
	// GenAIUsageInputTokens and GenAIUsageOutputTokens are the answer's tokens, as
	// the upstream reported them or as the gateway counted them.
	GenAIUsageInputTokens  = attribute.Key("gen_ai.usage.input_tokens")
	GenAIUsageOutputTokens = attribute.Key("gen_ai.usage.output_tokens")

	HTTPRequestMethod      = attribute.Key("http.request.method")
	HTTPRoute              = attribute.Key("http.route")
	HTTPResponseStatusCode = attribute.Key("http.response.status_code")
	// ErrorType is the stable error code of a failure (upstream_timeout,
	// rate_limit_exceeded, …), never its message.
	ErrorType = attribute.Key("error.type")

	// RequestID is the gateway's own id of the request (x-request-id).
	RequestID = attribute.Key("portcullis.request_id")
	ClientID  = attribute.Key("portcullis.client_id")
	Tenant    = attribute.Key("portcullis.tenant")
	// Region is the worker's region.
	Region = attribute.Key("portcullis.region")
	// Deployment is the deployment that answered (server span) or was called
	// (attempt and relay spans).
	Deployment = attribute.Key("portcullis.deployment")
	// Attempt numbers the request's upstream attempts from 1, the fallback's
	// included.
	Attempt = attribute.Key("portcullis.attempt")
	// Fallback is the model the request fell back to, FallbackReason why
	// (circuit_open, error_rate, or the code of the primary's last failure).
	Fallback       = attribute.Key("portcullis.fallback")
	FallbackReason = attribute.Key("portcullis.fallback_reason")
	// Candidates is how many deployments could serve the request.
	Candidates = attribute.Key("portcullis.candidates")
	// Stream is whether the answer is streamed.
	Stream = attribute.Key("portcullis.stream")
)
