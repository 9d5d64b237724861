// failsight for Node.js: why AI generations fail (hard, soft, silent), as the same Prometheus
// series and OpenTelemetry spans as the Python package.
export { configure, resetConfiguration, type ConfigureOptions } from "./config.js";
export { instrumentOpenAI, uninstrumentOpenAI } from "./instrument.js";
export { tracedGeneration, currentGeneration, Generation, type TracedGenerationOptions } from "./scope.js";
export { RetryPolicy, type RetryOptions } from "./retry.js";
export { nonEmpty, jsonOutput, oneOf, minWords, outputText, type Validator } from "./validators.js";
export { startMetricsServer, type MetricsServer, type MetricsServerOptions } from "./server.js";
export { classifyError, classifyResult } from "./classify.js";
export { type FailureClass, type Outcome, type Usage, type ResultKind } from "./taxonomy.js";
export * as validators from "./validators.js";
