"""Sessions of synthetic visitors, and the events they produce, as numpy columns.

A session is a visitor browsing: a run of views, each in one of the visitor's planted tastes or
anywhere by popularity. A few views lead to an add-to-cart and a few add-to-carts to a purchase;
a session's purchases check out together as one basket, as RetailRocket transactions do. Some
views are liked, and some sessions open with a search for a category.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from clickrec_platform.events.contract import EVENT_TYPES
from clickrec_platform.sources.synthetic.config import GeneratorConfig
from clickrec_platform.sources.synthetic.world import Sampler

VIEW, ADDTOCART, TRANSACTION, LIKE, SEARCH = (
    EVENT_TYPES.index(name) for name in ("view", "addtocart", "transaction", "like", "search")
)
NO_ID = -1  # marks a null item, transaction or query category in the integer columns

# Mean seconds between a visitor's steps.
_BETWEEN_VIEWS_S = 45.0
_VIEW_TO_CART_S = 30.0
_CART_TO_CHECKOUT_S = 120.0
_VIEW_TO_LIKE_S = 15.0


@dataclass(frozen=True)
class EventColumns:
    """Events as parallel numpy columns; `event` indexes `EVENT_TYPES`."""

    ts: np.ndarray  # epoch ms
    visitor_id: np.ndarray
    event: np.ndarray
    item_id: np.ndarray  # NO_ID for searches
    transaction_id: np.ndarray  # NO_ID except for transactions
    session: np.ndarray  # the session's number in the whole run
    query_category: np.ndarray  # the category a search is for; NO_ID for other events

    def __len__(self) -> int:
        return len(self.ts)

    def take(self, positions: np.ndarray) -> EventColumns:
        return EventColumns(**{f.name: getattr(self, f.name)[positions] for f in fields(self)})

    @classmethod
    def concat(cls, parts: list[EventColumns]) -> EventColumns:
        return cls(**{f.name: np.concatenate([getattr(part, f.name) for part in parts]) for f in fields(cls)})


def session_events(
    config: GeneratorConfig,
    sampler: Sampler,
    rng: np.random.Generator,
    sessions: np.ndarray,
    start_ms: np.ndarray,
) -> EventColumns:
    """Every event of the numbered `sessions`, which start at `start_ms`, in time order."""
    visitor = sampler.visitors(rng, len(sessions))

    def events(
        kind: int,
        ts: np.ndarray,
        in_session: np.ndarray,  # positions in `sessions`
        item: np.ndarray,
        basket: np.ndarray | None = None,
        query_category: np.ndarray | None = None,
    ) -> EventColumns:
        n = len(ts)
        return EventColumns(
            ts=ts,
            visitor_id=visitor[in_session],
            event=np.full(n, kind, dtype=np.int8),
            item_id=item,
            transaction_id=np.full(n, NO_ID) if basket is None else basket,
            session=sessions[in_session],
            query_category=np.full(n, NO_ID) if query_category is None else query_category,
        )

    n_views = rng.geometric(1 / config.views_per_session, len(sessions))
    view_session = np.repeat(np.arange(len(sessions)), n_views)
    view_ts = start_ms[view_session] + _ms(_elapsed_in_session_s(rng, n_views))
    view_item = np.empty(len(view_session), dtype=np.int64)
    from_taste = rng.random(len(view_session)) < config.taste_strength
    view_item[from_taste] = sampler.items_in(
        rng, sampler.taste_categories(rng, visitor[view_session[from_taste]])
    )
    view_item[~from_taste] = sampler.items(rng, int((~from_taste).sum()))

    carted = np.flatnonzero(rng.random(len(view_session)) < config.addtocart_per_view)
    cart_ts = view_ts[carted] + _ms(rng.exponential(_VIEW_TO_CART_S, len(carted)))
    buys = rng.random(len(carted)) < config.transaction_per_addtocart
    bought = carted[buys]
    checkout_ts = _basket_checkout_ts(rng, view_session[bought], cart_ts[buys])
    liked = np.flatnonzero(rng.random(len(view_session)) < config.like_per_view)
    like_ts = view_ts[liked] + _ms(rng.exponential(_VIEW_TO_LIKE_S, len(liked)))
    # A search opens its session, for the category of the session's first view.
    searched = np.flatnonzero(rng.random(len(sessions)) < config.search_per_session)
    first_view = np.cumsum(n_views) - n_views
    searched_category = sampler.world.items.category[view_item[first_view[searched]]]

    all_events = EventColumns.concat(
        [
            events(VIEW, view_ts, view_session, view_item),
            events(ADDTOCART, cart_ts, view_session[carted], view_item[carted]),
            # A basket is named by its session's run-wide number, so chunks need no shared counter.
            events(
                TRANSACTION,
                checkout_ts,
                view_session[bought],
                view_item[bought],
                basket=sessions[view_session[bought]],
            ),
            events(LIKE, like_ts, view_session[liked], view_item[liked]),
            events(
                SEARCH,
                start_ms[searched],
                searched,
                np.full(len(searched), NO_ID),
                query_category=searched_category,
            ),
        ]
    )
    return all_events.take(np.argsort(all_events.ts, kind="stable"))


def _elapsed_in_session_s(rng: np.random.Generator, n_views: np.ndarray) -> np.ndarray:
    """Seconds from each session's start to each of its views, sessions laid end to end."""
    gaps = rng.exponential(_BETWEEN_VIEWS_S, n_views.sum())
    elapsed = np.cumsum(gaps)
    first_view = np.cumsum(n_views) - n_views
    return elapsed - np.repeat(elapsed[first_view] - gaps[first_view], n_views)  # restart per session


def _basket_checkout_ts(rng: np.random.Generator, session: np.ndarray, cart_ts: np.ndarray) -> np.ndarray:
    """One checkout time per session's basket, after its last add-to-cart, for each bought item.

    `session` is sorted (views are generated session by session), so baskets are runs.
    """
    if not len(session):
        return np.empty(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, session[1:] != session[:-1]])
    last_cart_ts = np.maximum.reduceat(cart_ts, starts)
    checkout_ts = last_cart_ts + _ms(rng.exponential(_CART_TO_CHECKOUT_S, len(starts)))
    return np.repeat(checkout_ts, np.diff(np.r_[starts, len(session)]))


def _ms(seconds: np.ndarray) -> np.ndarray:
    return (seconds * 1000).astype(np.int64)
