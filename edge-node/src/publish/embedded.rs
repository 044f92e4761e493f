//! The in-process MQTT broker (rumqttd) used by `edge-node demo` and by
//! `mqtt.url = "embedded"`: a box with no central broker yet can still be
//! watched locally. Behind the default-on cargo feature `embedded-broker`.

use std::collections::HashMap;
use std::net::SocketAddr;

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

use super::PublishError;

/// Start a broker on `127.0.0.1:port`. It runs on its own threads until the
/// process exits (rumqttd has no shutdown API).
pub fn start(port: u16, max_payload: usize) -> Result<(), PublishError> {
    let listen: SocketAddr = ([127, 0, 0, 1], port).into();
    // Fail early and clearly when the port is taken: rumqttd would only log it.
    std::net::TcpListener::bind(listen)
        .map_err(|e| PublishError::Embedded(format!("cannot listen on {listen}: {e}")))?;
    let conn = ConnectionSettings {
        connection_timeout_ms: 5000,
        max_payload_size: max_payload,
        max_inflight_count: 200,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    // MQTT 5, as the node and `edge-node watch` speak it.
    let v5 = ServerSettings {
        name: "v5-edge".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections: conn,
    };
    // RouterConfig::default() is all zeros and unusable; these bound the memory
    // per topic filter to max_segment_size × max_segment_count (32 MiB).
    let cfg = Config {
        router: RouterConfig {
            max_connections: 64,
            max_outgoing_packet_count: 200,
            max_segment_size: 8 << 20,
            max_segment_count: 4,
            ..Default::default()
        },
        v5: Some(HashMap::from([("1".to_string(), v5)])),
        ..Default::default()
    };
    let mut broker = Broker::new(cfg);
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded broker stopped");
            }
        })
        .map_err(|e| PublishError::Embedded(e.to_string()))?;
    // Wait until the listener accepts connections.
    for _ in 0..100 {
        if std::net::TcpStream::connect(listen).is_ok() {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Err(PublishError::Embedded(format!(
        "the broker did not start listening on {listen}"
    )))
}
