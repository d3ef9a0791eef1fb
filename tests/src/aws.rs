//! A recording proxy in front of moto for AWS Query APIs (ELBv2): it logs
//! each call's `Action` and ARN count, and can answer chosen actions with
//! AWS's throttling error, or itself (what moto cannot model, such as
//! targets' `initial` and `draining` states).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One API call seen: its action and how many `ResourceArns` it carried.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub action: String,
    pub resource_arns: usize,
}

/// The start of a boto3 script against moto at `E`: EC2 and ELBv2 clients
/// (`ec2`, `lb`), a VPC (`vpc`) and two subnets (`subnets`) for a load
/// balancer.
pub const ALB_PRELUDE: &str = r#"
ec2 = boto3.client('ec2', endpoint_url=E, region_name='us-east-1', aws_access_key_id='t', aws_secret_access_key='t')
lb = boto3.client('elbv2', endpoint_url=E, region_name='us-east-1', aws_access_key_id='t', aws_secret_access_key='t')
vpc = ec2.create_vpc(CidrBlock='10.0.0.0/16')['Vpc']['VpcId']
subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f'10.0.{i}.0/24', AvailabilityZone=f'us-east-1{z}')['Subnet']['SubnetId'] for i, z in enumerate('ab')]
"#;

/// Answers a call from its form fields, or leaves it to moto (`None`).
pub type Answer = Box<dyn Fn(&[(String, String)]) -> Option<String> + Send + Sync>;

#[derive(Default)]
struct State {
    calls: Vec<Call>,
    /// Action → how many more calls get `Throttling`.
    throttle: HashMap<String, usize>,
    /// Action → who answers it instead of moto.
    answers: HashMap<String, Arc<Answer>>,
}

pub struct AwsProxy {
    pub port: u16,
    state: Arc<Mutex<State>>,
    _runtime: tokio::runtime::Runtime,
}

const THROTTLED: &str = "<ErrorResponse xmlns=\"http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/\"><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>1</RequestId></ErrorResponse>";

impl AwsProxy {
    pub fn start(upstream: &str) -> AwsProxy {
        use axum::extract::{Request, State as Extract};
        use axum::response::Response;
        type Shared = (String, reqwest::Client, Arc<Mutex<State>>);
        async fn handle(
            Extract((upstream, client, state)): Extract<Shared>,
            req: Request,
        ) -> Response {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
            let form: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
            let action = form
                .iter()
                .find(|(k, _)| k == "Action")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            let resource_arns = form
                .iter()
                .filter(|(k, _)| k.starts_with("ResourceArns.member."))
                .count();
            let (throttled, answer) = {
                let mut s = state.lock().unwrap();
                s.calls.push(Call {
                    action: action.clone(),
                    resource_arns,
                });
                let answer = s.answers.get(&action).cloned();
                let throttled = match s.throttle.get_mut(&action) {
                    Some(n) if *n > 0 => {
                        *n -= 1;
                        true
                    }
                    _ => false,
                };
                (throttled, answer)
            };
            if let Some(xml) = answer.and_then(|a| a(&form)) {
                return Response::builder()
                    .header("content-type", "text/xml")
                    .body(axum::body::Body::from(xml))
                    .unwrap();
            }
            if throttled {
                return Response::builder()
                    .status(400)
                    .header("content-type", "text/xml")
                    .body(axum::body::Body::from(THROTTLED))
                    .unwrap();
            }
            let mut forward = client.post(format!("{upstream}{}", parts.uri.path()));
            for (name, value) in &parts.headers {
                if name != "host" {
                    forward = forward.header(name, value);
                }
            }
            // moto gone (a test ending while a client still asks): a 502.
            let upstream_down = || {
                Response::builder()
                    .status(502)
                    .body(Default::default())
                    .unwrap()
            };
            let Ok(r) = forward.body(body).send().await else {
                return upstream_down();
            };
            let status = r.status().as_u16();
            let content_type = r.headers().get("content-type").cloned();
            let Ok(bytes) = r.bytes().await else {
                return upstream_down();
            };
            let mut resp = Response::builder().status(status);
            if let Some(ct) = content_type {
                resp = resp.header("content-type", ct);
            }
            resp.body(axum::body::Body::from(bytes)).unwrap()
        }
        // reqwest needs the process's crypto provider before a client exists.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let state = Arc::new(Mutex::new(State::default()));
        let shared: Shared = (upstream.to_string(), reqwest::Client::new(), state.clone());
        let app = axum::Router::new().fallback(handle).with_state(shared);
        let (port, runtime) = crate::serve(app, "AWS proxy");
        AwsProxy {
            port,
            state,
            _runtime: runtime,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The calls seen so far, and forgets them.
    pub fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut self.state.lock().unwrap().calls)
    }

    /// Answers `action` with `answer` from now on (moto where it says `None`).
    pub fn answer(
        &self,
        action: &str,
        answer: impl Fn(&[(String, String)]) -> Option<String> + Send + Sync + 'static,
    ) {
        let answer: Answer = Box::new(answer);
        self.state
            .lock()
            .unwrap()
            .answers
            .insert(action.into(), Arc::new(answer));
    }

    /// Answers the next `times` calls of `action` with `Throttling`.
    pub fn throttle(&self, action: &str, times: usize) {
        self.state
            .lock()
            .unwrap()
            .throttle
            .insert(action.into(), times);
    }
}

/// ELBv2's DescribeTargetHealth answer for `targets` (port 80).
pub fn target_health_xml(targets: &[rollout_core::world::TargetView]) -> String {
    use rollout_core::world::TargetState::*;
    let members: String = targets
        .iter()
        .map(|t| {
            let state = match t.state {
                Initial => "initial",
                Healthy => "healthy",
                Unhealthy => "unhealthy",
                Draining => "draining",
                Unused => "unused",
                Unavailable => "unavailable",
            };
            format!(
                "<member><Target><Id>{}</Id><Port>80</Port></Target><HealthCheckPort>80</HealthCheckPort>\
                 <TargetHealth><State>{state}</State></TargetHealth></member>",
                t.id
            )
        })
        .collect();
    format!(
        "<DescribeTargetHealthResponse xmlns=\"http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/\">\
         <DescribeTargetHealthResult><TargetHealthDescriptions>{members}</TargetHealthDescriptions>\
         </DescribeTargetHealthResult><ResponseMetadata><RequestId>sim</RequestId></ResponseMetadata>\
         </DescribeTargetHealthResponse>"
    )
}
