package main

// The components of otel-collector.yaml, one release of each (core v0.165.0 / v1.71.0,
// contrib v0.165.1): what the collector builder (ocb) would generate from a manifest.
// Adding a component: import it here, add it to go.mod at the same release, `make collector`.

import (
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/connector"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/debugexporter"
	"go.opentelemetry.io/collector/exporter/otlpexporter"
	"go.opentelemetry.io/collector/exporter/otlphttpexporter"
	"go.opentelemetry.io/collector/extension"
	"go.opentelemetry.io/collector/otelcol"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/batchprocessor"
	"go.opentelemetry.io/collector/processor/memorylimiterprocessor"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
	"go.opentelemetry.io/collector/service/telemetry/otelconftelemetry"

	"github.com/open-telemetry/opentelemetry-collector-contrib/connector/spanmetricsconnector"
	"github.com/open-telemetry/opentelemetry-collector-contrib/exporter/prometheusexporter"
)

const (
	coreRelease    = " v0.165.0"
	contribRelease = " v0.165.1"
	core           = "go.opentelemetry.io/collector/"
	contrib        = "github.com/open-telemetry/opentelemetry-collector-contrib/"
)

func modules[F interface{ Type() component.Type }](pairs map[string]F) map[component.Type]string {
	out := make(map[component.Type]string, len(pairs))
	for module, f := range pairs {
		out[f.Type()] = module
	}
	return out
}

func components() (otelcol.Factories, error) {
	receivers := map[string]receiver.Factory{
		core + "receiver/otlpreceiver" + coreRelease: otlpreceiver.NewFactory(),
	}
	processors := map[string]processor.Factory{
		core + "processor/memorylimiterprocessor" + coreRelease: memorylimiterprocessor.NewFactory(),
		core + "processor/batchprocessor" + coreRelease:         batchprocessor.NewFactory(),
	}
	connectors := map[string]connector.Factory{
		contrib + "connector/spanmetricsconnector" + contribRelease: spanmetricsconnector.NewFactory(),
	}
	exporters := map[string]exporter.Factory{
		core + "exporter/otlpexporter" + coreRelease:             otlpexporter.NewFactory(),
		core + "exporter/otlphttpexporter" + coreRelease:         otlphttpexporter.NewFactory(),
		core + "exporter/debugexporter" + coreRelease:            debugexporter.NewFactory(),
		contrib + "exporter/prometheusexporter" + contribRelease: prometheusexporter.NewFactory(),
	}

	var err error
	factories := otelcol.Factories{Telemetry: otelconftelemetry.NewFactory()}
	if factories.Extensions, err = otelcol.MakeFactoryMap[extension.Factory](); err != nil {
		return otelcol.Factories{}, err
	}
	if factories.Receivers, err = otelcol.MakeFactoryMap(values(receivers)...); err != nil {
		return otelcol.Factories{}, err
	}
	if factories.Processors, err = otelcol.MakeFactoryMap(values(processors)...); err != nil {
		return otelcol.Factories{}, err
	}
	if factories.Connectors, err = otelcol.MakeFactoryMap(values(connectors)...); err != nil {
		return otelcol.Factories{}, err
	}
	if factories.Exporters, err = otelcol.MakeFactoryMap(values(exporters)...); err != nil {
		return otelcol.Factories{}, err
	}
	factories.ReceiverModules = modules(receivers)
	factories.ProcessorModules = modules(processors)
	factories.ConnectorModules = modules(connectors)
	factories.ExporterModules = modules(exporters)
	return factories, nil
}

func values[F any](m map[string]F) []F {
	out := make([]F, 0, len(m))
	for _, f := range m {
		out = append(out, f)
	}
	return out
}
