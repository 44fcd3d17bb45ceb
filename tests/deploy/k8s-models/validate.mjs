// Validate Kubernetes custom resources against the schemas @kubernetes-models compiles from the
// projects' CRDs. Reads a JSON array of manifests on stdin; prints one JSON line per manifest:
// {"kind", "name", "checked": true|false, "error": null|"..."}; "checked" is false for a kind
// these packages do not cover (the Python side validates those). Exit 1 on any error.
import { Gateway } from "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/Gateway";
import { HTTPRoute } from "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/HTTPRoute";
import { ScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject";
import { TriggerAuthentication } from "@kubernetes-models/keda/keda.sh/v1alpha1/TriggerAuthentication";
import { PodMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";

const MODELS = [Gateway, HTTPRoute, ScaledObject, TriggerAuthentication, PodMonitor, ServiceMonitor];
const byType = new Map(MODELS.map((m) => [`${m.apiVersion}/${m.kind}`, m]));

let input = "";
for await (const chunk of process.stdin) input += chunk;
let failed = false;
for (const doc of JSON.parse(input)) {
  const Model = byType.get(`${doc.apiVersion}/${doc.kind}`);
  let error = null;
  if (Model) {
    try {
      new Model(doc).validate();
    } catch (e) {
      error = e.message;
      failed = true;
    }
  }
  console.log(JSON.stringify({ kind: doc.kind, name: doc.metadata?.name, checked: !!Model, error }));
}
process.exit(failed ? 1 : 0);
