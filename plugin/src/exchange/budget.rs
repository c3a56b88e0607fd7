//! The budgets of one exchange: which budgets apply to a request, the check at its headers,
//! the reservation of its estimate once its body is known, the refusal when a budget would be
//! crossed, and the settlement (the reservation replaced by the reported cost, or released)
//! when the exchange ends. The rules are [`crate::budget`]'s; this module keeps their state in
//! shared data and sets the budget gauges. The glue hands it header values and body bytes and
//! sends the refusal it returns.

use log::{debug, warn};

use super::{LocalReply, Shared};
use crate::api::{Billed, Provider};
use crate::budget::estimate::{self, Estimate, Pricing};
use crate::budget::scope::{self, Kind, OVERFLOW, Scope};
use crate::budget::{self, BudgetConfig, BudgetExceeded, BudgetState, Refusal};
use crate::metrics::{self, Counter};
use crate::routing::{self, BodyPlan, BodyStep};
use crate::shared_store;
use crate::usage::UsageParser;

/// What the budgets read from a request's headers (before the `x-headroom-*` ones go).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RequestFacts<'a> {
    /// `content-type`.
    pub(crate) content_type: Option<&'a [u8]>,
    /// `content-encoding`.
    pub(crate) content_encoding: Option<&'a [u8]>,
    /// `X-Headroom-Project`.
    pub(crate) project: Option<&'a [u8]>,
    /// The credential headers ([`scope::CREDENTIAL_HEADERS`]), in order.
    pub(crate) credentials: [Option<&'a [u8]>; 3],
}

/// One budget a request holds a reservation in (possibly of 0 USD: its cost is still
/// charged there when the exchange ends).
#[derive(Debug, Clone)]
struct Ticket {
    /// The budget.
    scope: Scope,
    /// Start of the period the reservation was made in.
    reserved_in: u64,
    /// USD reserved.
    reserved_usd: f64,
}

/// A request's standing with the budgets, from its headers to its end.
#[derive(Debug, Default)]
pub(crate) struct BudgetGuard {
    /// The provider (for the refusal's shape); `None`: no budget applies to this request.
    provider: Option<Provider>,
    /// How the request is priced before it runs.
    pricing: Option<Pricing>,
    /// The budgets that apply (decided at the request headers).
    scopes: Vec<Scope>,
    /// The body is needed for the estimate and has not been read.
    wants_body: bool,
    /// Reservations held until the exchange ends.
    tickets: Vec<Ticket>,
    /// The exchange has been settled.
    settled: bool,
    /// A billed endpoint the filter does not compress: the guard reads its usage.
    billed: Option<Billed>,
    /// Reads a billed endpoint's usage.
    usage: Option<UsageParser>,
    /// The request's model, when its body named one.
    model: Option<String>,
}

impl BudgetGuard {
    /// Checks a provider request at its headers: a budget already spent refuses it here
    /// (`Some(reply)`); otherwise the guard decides whether it needs the body for an estimate,
    /// and admits a request without one now. `billed` is set for the endpoints the filter does
    /// not compress.
    pub(crate) fn on_request_headers(
        &mut self,
        shared: &Shared,
        provider: Provider,
        billed: Option<Billed>,
        facts: &RequestFacts<'_>,
        end_of_stream: bool,
    ) -> Option<LocalReply> {
        let config = shared.config.budget.as_ref()?;
        let now = shared.host.unix_now()?;
        self.provider = Some(provider);
        self.billed = billed;
        self.scopes = scopes_of(shared, config, facts);
        for scope in &self.scopes {
            let state = shared_store::budget_state(&*shared.host, &scope.state_key());
            if let budget::BudgetVerdict::Exceeded(exceeded) =
                budget::check(&scope.limit, &state, now)
            {
                return Some(self.refuse(shared, &refusal(scope, exceeded), now));
            }
        }
        let pricing = match billed {
            Some(billed) if billed.priced_per_token() => Pricing::Tokens {
                output: billed.generates(),
            },
            Some(_) => Pricing::Unestimable,
            None => Pricing::Tokens { output: true },
        };
        self.pricing = Some(pricing);
        let plan = routing::body_plan(facts.content_type, facts.content_encoding, end_of_stream);
        if pricing != Pricing::Unestimable && plan == BodyPlan::Buffer {
            self.wants_body = true;
        } else {
            self.admit_unestimated(shared, now);
        }
        None
    }

    /// Whether the billed endpoint's response must arrive readable (unencoded) for its usage.
    pub(crate) fn wants_readable_response(&self, shared: &Shared) -> bool {
        self.provider.is_some()
            && self.billed.is_some_and(|b| b.usage_api().is_some())
            && shared.config.read_usage
    }

    /// Whether the estimate still needs the request body.
    pub(crate) fn wants_body(&self) -> bool {
        self.wants_body
    }

    /// What a request body callback should do while the compressing path is not buffering.
    pub(crate) fn body_step(
        &mut self,
        shared: &Shared,
        body_size: usize,
        end_of_stream: bool,
    ) -> Option<BodyStep> {
        if !self.wants_body {
            return None;
        }
        let step = routing::body_step(body_size, end_of_stream, shared.config.max_body_bytes);
        if step == BodyStep::TooLarge {
            self.body_unreadable(shared);
        }
        Some(step)
    }

    /// The whole request body (`None`: it could not be read): estimates and reserves;
    /// `Some(reply)` when the request was refused.
    pub(crate) fn reserve(&mut self, shared: &Shared, body: Option<&[u8]>) -> Option<LocalReply> {
        if !std::mem::take(&mut self.wants_body) {
            return None;
        }
        let now = shared.host.unix_now()?;
        let Some(body) = body else {
            debug!("headroom: budget: cannot read the request body");
            self.admit_unestimated(shared, now);
            return None;
        };
        let config = shared.config.budget.as_ref()?;
        let facts = estimate::request_facts(body);
        self.model.clone_from(&facts.model);
        let pricing = self.pricing.unwrap_or(Pricing::Unestimable);
        match estimate::estimate(config, &shared.prices, pricing, &facts) {
            Estimate::Usd(usd) => match self.admit(shared, usd, now) {
                Ok(()) => None,
                Err(refusal) => Some(self.refuse(shared, &refusal, now)),
            },
            Estimate::Unknown => {
                self.admit_unestimated(shared, now);
                None
            }
            Estimate::Unpriced(model) => {
                Some(self.refuse(shared, &Refusal::UnpricedModel { model }, now))
            }
        }
    }

    /// The body cannot be read for an estimate (too large, trailers): admitted without one.
    pub(crate) fn body_unreadable(&mut self, shared: &Shared) {
        if std::mem::take(&mut self.wants_body)
            && let Some(now) = shared.host.unix_now()
        {
            self.admit_unestimated(shared, now);
        }
    }

    /// Reserves `estimate_usd` in every applicable budget, in order; on a refusal the
    /// reservations already made are released.
    fn admit(&mut self, shared: &Shared, estimate_usd: f64, now: u64) -> Result<(), Refusal> {
        for scope in self.scopes.clone() {
            match shared_store::budget_reserve(
                &*shared.host,
                &scope.state_key(),
                &scope.limit,
                estimate_usd,
                now,
            ) {
                Ok(Some((reserved_in, state))) => {
                    set_gauges(shared, &scope, &state, now);
                    self.tickets.push(Ticket {
                        scope,
                        reserved_in,
                        reserved_usd: estimate_usd,
                    });
                }
                // Shared data failed: admitted here without a reservation (fail open), but
                // still charged when the exchange ends.
                Ok(None) => self.tickets.push(Ticket {
                    reserved_in: budget::period_start(scope.limit.period, now),
                    scope,
                    reserved_usd: 0.0,
                }),
                Err(exceeded) => {
                    let refusal = refusal(&scope, exceeded);
                    self.release(shared, now);
                    return Err(refusal);
                }
            }
        }
        Ok(())
    }

    /// Admits a request whose cost is not known in advance: it was checked at its headers,
    /// reserves nothing and is charged what its response reports.
    fn admit_unestimated(&mut self, shared: &Shared, now: u64) {
        if self.admit(shared, 0.0, now).is_err() {
            // Spent since the headers were checked: still admitted (the check passed), and
            // charged in every budget.
            self.tickets = self
                .scopes
                .iter()
                .map(|scope| Ticket {
                    scope: scope.clone(),
                    reserved_in: budget::period_start(scope.limit.period, now),
                    reserved_usd: 0.0,
                })
                .collect();
        }
    }

    /// Drops every reservation without a charge.
    fn release(&mut self, shared: &Shared, now: u64) {
        for ticket in std::mem::take(&mut self.tickets) {
            settle_ticket(shared, &ticket, None, now);
        }
    }

    /// Ends the exchange once: every reservation is replaced by `cost_usd` (released when
    /// `None`: no usage, an unpriced model, a failed or cut-off response).
    pub(crate) fn settle(&mut self, shared: &Shared, cost_usd: Option<f64>) {
        if std::mem::replace(&mut self.settled, true) {
            return;
        }
        let Some(now) = shared.host.unix_now() else {
            return;
        };
        for ticket in std::mem::take(&mut self.tickets) {
            settle_ticket(shared, &ticket, cost_usd, now);
        }
    }

    /// The cost a compressed API's exchange is charged: see [`estimate::charge`].
    pub(crate) fn charge(
        shared: &Shared,
        model: &str,
        usage: &crate::usage::Usage,
        costs: Option<&crate::accounting::Costs>,
    ) -> Option<f64> {
        let config = shared.config.budget.as_ref()?;
        estimate::charge(config, &shared.prices, model, usage, costs)
    }

    /// A billed endpoint's response headers: starts reading its usage when it reports one
    /// (`encoded`: the body is content-encoded, so unreadable).
    pub(crate) fn on_response_headers(
        &mut self,
        shared: &Shared,
        encoded: bool,
        content_type: &[u8],
    ) {
        let Some(api) = self.billed.and_then(Billed::usage_api) else {
            return;
        };
        if self.tickets.is_empty() || !shared.config.read_usage || encoded {
            return;
        }
        self.usage = Some(UsageParser::for_content_type(api, content_type));
    }

    /// Whether the guard reads the response body (a billed endpoint's usage).
    pub(crate) fn reads_response(&self) -> bool {
        self.billed.is_some() && self.usage.is_some()
    }

    /// A billed endpoint's response chunk (`None`: it could not be read, so the usage is
    /// lost); at the end, settles.
    pub(crate) fn on_response_body(&mut self, shared: &Shared, chunk: Option<&[u8]>, end: bool) {
        if self.billed.is_none() {
            return;
        }
        match (self.usage.as_mut(), chunk) {
            (Some(parser), Some(chunk)) => parser.feed(chunk),
            (Some(_), None) => {
                debug!("headroom: budget: cannot read a response chunk");
                self.usage = None;
            }
            (None, _) => {}
        }
        if end {
            self.finish_billed(shared);
        }
    }

    /// A billed endpoint's exchange ended: charges what its usage reports (priced or at the
    /// fallback price), else releases.
    fn finish_billed(&mut self, shared: &Shared) {
        let usage = self.usage.take().and_then(UsageParser::finish);
        let cost = usage.and_then(|usage| {
            let model = self.model.clone().or_else(|| usage.model.clone())?;
            let costs = crate::accounting::exchange_costs(&shared.prices, &model, &usage, 0);
            Self::charge(shared, &model, &usage, costs.as_ref())
        });
        self.settle(shared, cost);
    }

    /// The stream's end: a billed exchange not settled yet (its response never ended) is
    /// settled from what was read; anything else still held is released.
    pub(crate) fn on_log(&mut self, shared: &Shared) {
        if self.billed.is_some() && !self.settled {
            self.finish_billed(shared);
        }
        self.settle(shared, None);
    }

    /// The refusal (a 429 in the provider's error shape); the request goes no further.
    fn refuse(&mut self, shared: &Shared, refusal: &Refusal, now: u64) -> LocalReply {
        self.wants_body = false;
        self.settled = true;
        shared.host.inc(Counter::BudgetRejected);
        // The first rejection of each period is logged (per VM).
        let period = match refusal {
            Refusal::Exceeded { exceeded, .. } => exceeded.resets_at,
            Refusal::UnpricedModel { .. } => 1,
        };
        if shared.budget_warned.replace(period) != period {
            warn!("headroom: {}", budget::rejection_message(refusal));
        }
        let provider = self.provider.unwrap_or(Provider::OpenAi);
        LocalReply {
            status: budget::REJECTION_STATUS,
            headers: budget::rejection_headers(refusal, now)
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value))
                .collect(),
            body: budget::rejection_body(provider, refusal).into_bytes(),
            what: "budget rejection",
        }
    }
}

/// The refusal by `scope` with `exceeded`.
fn refusal(scope: &Scope, exceeded: BudgetExceeded) -> Refusal {
    Refusal::Exceeded {
        budget: scope.describe(),
        exceeded,
    }
}

/// Settles one ticket and updates its gauges.
fn settle_ticket(shared: &Shared, ticket: &Ticket, cost_usd: Option<f64>, now: u64) {
    if let Some(state) = shared_store::budget_settle(
        &*shared.host,
        &ticket.scope.state_key(),
        ticket.scope.limit.period,
        ticket.reserved_in,
        ticket.reserved_usd,
        cost_usd,
        now,
    ) {
        set_gauges(shared, &ticket.scope, &state, now);
    }
}

/// Sets the limit, spent and remaining gauges of `scope` from its state.
fn set_gauges(shared: &Shared, scope: &Scope, state: &BudgetState, now: u64) {
    let current = state.current(scope.limit.period, now);
    let remaining = (scope.limit.limit_usd - current.spent_usd - current.reserved_usd).max(0.0);
    let kind = scope.kind.as_str();
    for (base, usd) in [
        (metrics::BUDGET_LIMIT, scope.limit.limit_usd),
        (metrics::BUDGET_SPENT, current.spent_usd),
        (metrics::BUDGET_REMAINING, remaining),
    ] {
        shared.host.set_gauge_named(
            &metrics::budget_gauge(base, kind, &scope.id),
            crate::accounting::nano_usd(usd),
        );
    }
}

/// The budgets that apply to the request at hand: the global one, its API key's and its
/// project's.
fn scopes_of(shared: &Shared, config: &BudgetConfig, facts: &RequestFacts<'_>) -> Vec<Scope> {
    let data = &*shared.host;
    let mut scopes = vec![Scope {
        kind: Kind::Global,
        id: "global".to_owned(),
        limit: config.global(),
    }];
    if let Some(limit) = config.per_key
        && let Some(id) = key_of(shared, config, facts)
    {
        let tracked = shared_store::budget_keys(config.max_keys).admit(data, &id);
        scopes.push(Scope {
            kind: Kind::Key,
            id: if tracked { id } else { OVERFLOW.to_owned() },
            limit,
        });
    }
    let project = facts
        .project
        .map(|v| String::from_utf8_lossy(v).into_owned());
    if let Some((id, limit, configured)) = project
        .as_deref()
        .and_then(|name| scope::project_limit(config, name))
    {
        let tracked =
            configured || shared_store::budget_projects(config.max_projects).admit(data, &id);
        scopes.push(Scope {
            kind: Kind::Project,
            id: if tracked { id } else { OVERFLOW.to_owned() },
            limit,
        });
    }
    scopes
}

/// The id of the request's API key; `None` without a credential or a secret.
fn key_of(shared: &Shared, config: &BudgetConfig, facts: &RequestFacts<'_>) -> Option<String> {
    let secret = match &config.key_secret {
        Some(secret) => secret.as_bytes().to_vec(),
        None => shared_store::budget_secret(&*shared.host)?,
    };
    scope::key_id(&secret, facts.credentials)
}

/// The `budget` block of `/stats`: every budget's state as shared data holds it.
pub(crate) fn stats_block(shared: &Shared) -> serde_json::Value {
    let data = &*shared.host;
    let now = shared.host.unix_now().unwrap_or(0);
    let Some(config) = shared.config.budget.as_ref() else {
        return budget::budget_json(None, &budget::States::default(), now);
    };
    let key_of = |kind, id: &str| {
        Scope {
            kind,
            id: id.to_owned(),
            limit: config.global(),
        }
        .state_key()
    };
    let state_of = |kind, id: &str| shared_store::budget_state(data, &key_of(kind, id));
    let mut states = budget::States {
        global: shared_store::budget_state(data, "headroom.budget"),
        ..budget::States::default()
    };
    let listed = |set: shared_store::LabelSet, kind| {
        let mut ids = set.values(data);
        if shared_store::exists(data, &key_of(kind, OVERFLOW)) {
            ids.push(OVERFLOW.to_owned());
        }
        ids
    };
    if let Some(limit) = config.per_key {
        states.keys = listed(shared_store::budget_keys(config.max_keys), Kind::Key)
            .into_iter()
            .map(|id| {
                let state = state_of(Kind::Key, &id);
                (id, limit, state)
            })
            .collect();
    }
    for (name, limit) in &config.projects {
        let id = scope::project_id(name);
        let state = state_of(Kind::Project, &id);
        states.projects.push((id, *limit, state));
    }
    if let Some(limit) = config.default_project {
        let ids = listed(
            shared_store::budget_projects(config.max_projects),
            Kind::Project,
        );
        for id in ids {
            if states.projects.iter().all(|(known, _, _)| *known != id) {
                let state = state_of(Kind::Project, &id);
                states.projects.push((id, limit, state));
            }
        }
    }
    budget::budget_json(Some(config), &states, now)
}
