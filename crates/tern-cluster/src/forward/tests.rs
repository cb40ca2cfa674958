//! The forwarding link and handover over a real gRPC connection on
//! loopback, with a recording handler as the receiving broker.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::*;

/// Records every delivery; refuses payloads starting with "refuse".
#[derive(Default)]
struct Recorder {
    delivered: Mutex<Vec<(NodeId, Delivery)>>,
    slow: AtomicBool,
}

impl PeerHandler for Recorder {
    fn deliver(&self, from: NodeId, delivery: Delivery) -> BoxFuture<'static, Result<(), String>> {
        let refuse = delivery.message.starts_with(b"refuse");
        self.delivered.lock().unwrap().push((from, delivery));
        let slow = self.slow.load(Ordering::Relaxed);
        Box::pin(async move {
            if slow {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            if refuse {
                Err("refused by the test".to_owned())
            } else {
                Ok(())
            }
        })
    }

    fn handover(
        &self,
        client_id: String,
        to: NodeId,
        step: HandoverStep,
    ) -> BoxFuture<'static, Result<Handover, String>> {
        Box::pin(async move {
            match step {
                HandoverStep::Start if client_id == "known" => Ok(Handover {
                    session: Some(Bytes::from(format!("session for {to}"))),
                    messages: Vec::new(),
                }),
                HandoverStep::Start => Ok(Handover::default()),
                HandoverStep::Finish => Ok(Handover {
                    session: None,
                    messages: vec![Bytes::from_static(b"late")],
                }),
            }
        })
    }
}

/// Serves `handler` on a free loopback port until `stop` fires.
/// The returned sender keeps the service's shutdown signal open.
async fn serve(
    handler: Arc<Recorder>,
) -> (
    String,
    oneshot::Sender<()>,
    tokio::sync::watch::Sender<bool>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    let incoming = tokio_stream_from(listener);
    let (keep, shutdown) = tokio::sync::watch::channel(false);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_routes(service(handler, shutdown))
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            }),
    );
    (address, stop, keep)
}

fn tokio_stream_from(
    listener: TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| stream);
        Some((accepted, listener))
    })
}

fn forwarder_to(address: &str) -> Forwarder {
    let address = address.to_owned();
    Forwarder::new(
        7,
        Arc::new(move |node| (node == 2).then(|| address.clone())),
    )
}

fn delivery(text: &str) -> Delivery {
    Delivery {
        message: Bytes::from(text.to_owned()),
        plain: true,
        groups: vec!["$share/g/t".to_owned()],
    }
}

#[tokio::test]
async fn messages_arrive_in_order_and_acknowledgements_follow_durability() {
    let handler = Arc::new(Recorder::default());
    handler.slow.store(true, Ordering::Relaxed);
    let (address, _stop, _keep) = serve(Arc::clone(&handler)).await;
    let forwarder = forwarder_to(&address);
    let mut acks = Vec::new();
    for index in 0..300 {
        let (sender, receiver) = oneshot::channel();
        let ack: Option<AckCallback> = (index % 3 != 0).then(|| {
            Box::new(move |result| {
                let _ = sender.send(result);
            }) as AckCallback
        });
        let text = if index == 100 {
            "refuse-100".to_owned()
        } else {
            format!("m{index}")
        };
        forwarder.send(2, delivery(&text), ack);
        if index % 3 != 0 {
            acks.push((index, receiver));
        }
    }
    for (index, receiver) in acks {
        let result = tokio::time::timeout(Duration::from_secs(10), receiver)
            .await
            .expect("acknowledged in time")
            .expect("callback called");
        if index == 100 {
            assert_eq!(result, Err("refused by the test".to_owned()));
        } else {
            assert_eq!(result, Ok(()), "message {index}");
        }
    }
    let delivered = handler.delivered.lock().unwrap();
    assert_eq!(delivered.len(), 300);
    for (index, (from, delivery)) in delivered.iter().enumerate() {
        assert_eq!(*from, 7);
        let expected = if index == 100 {
            "refuse-100".to_owned()
        } else {
            format!("m{index}")
        };
        assert_eq!(delivery.message, expected.as_bytes(), "in order");
        assert!(delivery.plain);
        assert_eq!(delivery.groups, ["$share/g/t"]);
    }
    assert_eq!(forwarder.stats().sent, 300);
}

#[tokio::test]
async fn an_unreachable_node_fails_acknowledgements_at_once() {
    // A port nobody listens on.
    let address = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let forwarder = forwarder_to(&address);
    let (sender, receiver) = oneshot::channel();
    forwarder.send(
        2,
        delivery("lost"),
        Some(Box::new(move |result| {
            let _ = sender.send(result);
        })),
    );
    let result = tokio::time::timeout(Duration::from_secs(10), receiver)
        .await
        .unwrap()
        .unwrap();
    let error = result.unwrap_err();
    assert!(error.contains("node 2"), "{error}");
    assert_eq!(forwarder.stats().failed, 1);
    // An unknown node fails the same way.
    let (sender, receiver) = oneshot::channel();
    forwarder.send(
        9,
        delivery("nowhere"),
        Some(Box::new(move |result| {
            let _ = sender.send(result);
        })),
    );
    assert!(receiver.await.unwrap().is_err());
}

/// A TCP relay in front of the server that the test can cut and restore,
/// as a network failure would.
struct Relay {
    address: std::net::SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Relay {
    async fn start(address: std::net::SocketAddr, target: String) -> Self {
        let listener = TcpListener::bind(address).await.unwrap();
        let address = listener.local_addr().unwrap();
        let accept = tokio::spawn(async move {
            let mut pipes = Vec::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                pipes.push(AbortOnDrop(tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                })));
            }
        });
        Self {
            address,
            tasks: vec![accept],
        }
    }

    fn cut(self) -> std::net::SocketAddr {
        for task in self.tasks {
            task.abort();
        }
        self.address
    }
}

/// Aborts its task when dropped, so cutting the relay closes every pipe.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn send_with_ack(forwarder: &Forwarder, text: &str) -> oneshot::Receiver<Result<(), String>> {
    let (sender, receiver) = oneshot::channel();
    forwarder.send(
        2,
        delivery(text),
        Some(Box::new(move |result| {
            let _ = sender.send(result);
        })),
    );
    receiver
}

async fn outcome(receiver: oneshot::Receiver<Result<(), String>>) -> Result<(), String> {
    tokio::time::timeout(Duration::from_secs(10), receiver)
        .await
        .expect("an answer in time")
        .expect("callback called")
}

#[tokio::test]
async fn a_cut_link_fails_what_waits_then_reconnects() {
    let handler = Arc::new(Recorder::default());
    let (server, _stop, _keep) = serve(Arc::clone(&handler)).await;
    let relay = Relay::start("127.0.0.1:0".parse().unwrap(), server.clone()).await;
    let forwarder = forwarder_to(&relay.address.to_string());
    assert_eq!(outcome(send_with_ack(&forwarder, "before")).await, Ok(()));

    let address = relay.cut();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let during = outcome(send_with_ack(&forwarder, "during")).await;
    assert!(
        during.is_err(),
        "a message over a cut link is not acknowledged"
    );

    let _relay = Relay::start(address, server).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if outcome(send_with_ack(&forwarder, "after")).await.is_ok() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no reconnection within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let delivered = handler.delivered.lock().unwrap();
    assert_eq!(delivered.first().unwrap().1.message, &b"before"[..]);
    assert_eq!(delivered.last().unwrap().1.message, &b"after"[..]);
}

#[tokio::test]
async fn handover_steps_reach_the_old_node() {
    let handler = Arc::new(Recorder::default());
    let (address, _stop, _keep) = serve(handler).await;
    let forwarder = forwarder_to(&address);
    let started = forwarder
        .handover(2, "known", HandoverStep::Start)
        .await
        .unwrap();
    assert_eq!(started.session.as_deref(), Some(&b"session for 7"[..]));
    let unknown = forwarder
        .handover(2, "unknown", HandoverStep::Start)
        .await
        .unwrap();
    assert_eq!(unknown.session, None);
    let finished = forwarder
        .handover(2, "known", HandoverStep::Finish)
        .await
        .unwrap();
    assert_eq!(finished.messages, [Bytes::from_static(b"late")]);
    let error = forwarder
        .handover(5, "known", HandoverStep::Start)
        .await
        .unwrap_err();
    assert_eq!(error, HandoverError::UnknownNode(5));
}
