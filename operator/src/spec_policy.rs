//! What a function's spec may ask for beyond its own pods: a worker image
//! of its choice, a Service reachable from outside the cluster, Service
//! annotations (which controllers such as external-dns act on). Each is
//! refused unless the operator's flags (the chart's values) allow it.

use crate::crd::{NurFunctionSpec, ServiceType};

/// The operator's flags on risky spec fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecPolicy {
    /// spec.image may name another worker image (`--allow-image-override`).
    pub allow_image_override: bool,
    /// Service types spec.service.type may ask for (`--allow-service-types`);
    /// ClusterIP always.
    pub service_types: Vec<ServiceType>,
    /// spec.service.annotations may be set (`--allow-service-annotations`).
    pub allow_service_annotations: bool,
}

impl Default for SpecPolicy {
    /// Nothing beyond the function's own pods and a ClusterIP Service.
    fn default() -> Self {
        Self {
            allow_image_override: false,
            service_types: vec![ServiceType::ClusterIP],
            allow_service_annotations: false,
        }
    }
}

impl SpecPolicy {
    /// Refuses the first field this policy does not allow, naming it and
    /// the flag that would allow it.
    pub fn check(&self, spec: &NurFunctionSpec) -> Result<(), String> {
        if let Some(image) = &spec.image
            && !self.allow_image_override
        {
            return Err(format!(
                "spec.image {image:?} is not allowed: this operator runs every function with its \
                 own worker image (allowed with --allow-image-override, chart value \
                 operator.allowImageOverride)"
            ));
        }
        let service = spec.service.clone().unwrap_or_default();
        let type_ = service.type_.unwrap_or_default();
        if type_ != ServiceType::ClusterIP && !self.service_types.contains(&type_) {
            return Err(format!(
                "spec.service.type {} is not allowed: only ClusterIP{} (allowed with \
                 --allow-service-types, chart value operator.allowServiceTypes)",
                type_.as_str(),
                self.service_types
                    .iter()
                    .filter(|t| **t != ServiceType::ClusterIP)
                    .map(|t| format!(", {}", t.as_str()))
                    .collect::<String>()
            ));
        }
        if service.annotations.is_some_and(|a| !a.is_empty()) && !self.allow_service_annotations {
            return Err(
                "spec.service.annotations are not allowed: they can claim DNS names and \
                 load balancers (allowed with --allow-service-annotations, chart value \
                 operator.allowServiceAnnotations)"
                    .into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> NurFunctionSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn risky_fields_need_a_flag() {
        let strict = SpecPolicy::default();
        assert_eq!(strict.check(&spec("module: {url: s3://b/k}")), Ok(()));
        let image = spec("module: {url: s3://b/k}\nimage: evil:latest");
        assert!(
            strict
                .check(&image)
                .unwrap_err()
                .contains("--allow-image-override")
        );
        let lb = spec("module: {url: s3://b/k}\nservice: {type: LoadBalancer}");
        assert!(
            strict
                .check(&lb)
                .unwrap_err()
                .contains("LoadBalancer is not allowed")
        );
        let annotated = spec(
            "module: {url: s3://b/k}\nservice: {annotations: {external-dns.alpha.kubernetes.io/hostname: bank.example.com}}",
        );
        assert!(
            strict
                .check(&annotated)
                .unwrap_err()
                .contains("annotations")
        );
        let open = SpecPolicy {
            allow_image_override: true,
            service_types: vec![ServiceType::LoadBalancer],
            allow_service_annotations: true,
        };
        for s in [image, lb, annotated] {
            assert_eq!(open.check(&s), Ok(()));
        }
        let node_port = spec("module: {url: s3://b/k}\nservice: {type: NodePort}");
        assert!(open.check(&node_port).is_err());
    }
}
