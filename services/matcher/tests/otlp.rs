//! Traces and metrics over OTLP: a real OTLP/gRPC receiver on loopback records what the
//! server exports. The caller's traceparent is the parent of the server span, and the
//! stages are its children.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed expectation is the report

mod common;

use common::{match_image, photo};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default, Clone)]
struct Collector {
    spans: Arc<Mutex<Vec<opentelemetry_proto::tonic::trace::v1::Span>>>,
    metric_names: Arc<Mutex<Vec<String>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            for ss in rs.scope_spans {
                spans.extend(ss.spans);
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

#[tonic::async_trait]
impl MetricsService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let mut names = self.metric_names.lock().unwrap();
        for rm in request.into_inner().resource_metrics {
            for sm in rm.scope_metrics {
                names.extend(sm.metrics.into_iter().map(|m| m.name));
            }
        }
        Ok(tonic::Response::new(ExportMetricsServiceResponse { partial_success: None }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_and_metrics_are_exported_over_otlp_with_the_callers_parent() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let otlp = listener.local_addr().unwrap();
    let svc = collector.clone();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(svc.clone()))
            .add_service(MetricsServiceServer::new(svc))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
    });
    let endpoint = format!("http://{otlp}");
    let server = common::Server::start_with_env(
        &common::people_gallery(),
        &["--workers", "1"],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_METRIC_EXPORT_INTERVAL", "500"),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ],
    );
    server.wait_serving().await;
    let mut c = server.client().await;
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let parent_id = "b7ad6b7169203331";
    let mut req = tonic::Request::new(match_image(photo("lfw-dev/Tony_Blair/0003.jpg"), 1));
    req.metadata_mut().insert("traceparent", format!("00-{trace_id}-{parent_id}-01").parse().unwrap());
    c.r#match(req).await.expect("match");

    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let mut ok = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let spans = collector.spans.lock().unwrap().clone();
        let ours: Vec<_> = spans.iter().filter(|s| hex(&s.trace_id) == trace_id).collect();
        let Some(root) = ours.iter().find(|s| s.name == "Match") else { continue };
        let names: Vec<&str> = ours.iter().map(|s| s.name.as_str()).collect();
        if !["decode", "detect", "landmarks", "encode", "search"].iter().all(|n| names.contains(n)) {
            continue;
        }
        assert_eq!(hex(&root.parent_span_id), parent_id, "the caller's span is the parent");
        let metrics = collector.metric_names.lock().unwrap().clone();
        if metrics.iter().any(|m| m == "lookalike.requests") {
            ok = true;
            break;
        }
    }
    assert!(
        ok,
        "spans {:?}; metrics {:?}",
        collector.spans.lock().unwrap().iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
        collector.metric_names.lock().unwrap()
    );
}
