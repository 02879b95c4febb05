"""The synthetic world: a category tree, a power-law catalogue and visitors with planted tastes.

Ids are array positions (category, item and visitor 0, 1, ...), so every lookup is numpy
indexing. The world is the ground truth that later model tests check models recover.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clickrec_platform.sources.synthetic.config import GeneratorConfig

_SYLLABLES = np.array(
    ["ka", "lo", "mi", "ne", "ru", "sa", "te", "vo", "zi", "pa", "do", "ge", "fu", "ba", "ri", "no"]
)
_MIN_SYLLABLES = 3
# A visitor's tastes are not equally strong: each is this fraction of the one before.
_TASTE_DECAY = 0.6
_AVAILABLE_SHARE = 0.85


@dataclass(frozen=True)
class CategoryTree:
    parent: np.ndarray  # parent category id, -1 for roots
    level: np.ndarray  # 0 for roots
    root: np.ndarray  # the root each category descends from
    name: np.ndarray  # pseudo-words, what searches for the category type

    @property
    def leaves(self) -> np.ndarray:
        return np.flatnonzero(self.level == self.level.max())


@dataclass(frozen=True)
class Catalogue:
    category: np.ndarray  # leaf category of each item
    popularity: np.ndarray  # sums to 1: the share of untargeted views each item gets
    price: np.ndarray  # whole currency units
    brand: np.ndarray
    available: np.ndarray  # bool, at the start of the window


@dataclass(frozen=True)
class Visitors:
    activity: np.ndarray  # sums to 1: the share of sessions each visitor has
    tastes: np.ndarray  # (visitors, tastes_per_visitor) leaf category ids, strongest first
    taste_share: np.ndarray  # (tastes_per_visitor,) how a visitor's taste views split over tastes


@dataclass(frozen=True)
class World:
    categories: CategoryTree
    items: Catalogue
    visitors: Visitors


class Sampler:
    """Draws from a world's distributions, a whole batch of draws per call."""

    def __init__(self, world: World) -> None:
        self.world = world
        self._items_cdf = _cdf(world.items.popularity)
        self._visitors_cdf = _cdf(world.visitors.activity)
        self._taste_cdf = _cdf(world.visitors.taste_share)
        by_category = np.argsort(world.items.category, kind="stable")
        category = world.items.category[by_category]
        # Each category's items get cumulative shares in (0, 1], shifted up by the category id,
        # so one sorted array and one searchsorted serve draws from every category at once.
        cumulative = np.cumsum(world.items.popularity[by_category])
        starts = np.flatnonzero(np.r_[True, category[1:] != category[:-1]])
        ends = np.r_[starts[1:], len(category)]
        before = np.repeat(np.r_[0.0, cumulative[starts[1:] - 1]], ends - starts)
        totals = np.repeat(cumulative[ends - 1], ends - starts) - before
        self._items_by_category = by_category
        self._category_shifted_cdf = category + (cumulative - before) / totals
        self._last_position = np.zeros(len(world.categories.parent), dtype=np.int64)
        self._last_position[category[starts]] = ends - 1

    def visitors(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Visitors by activity."""
        return _draw(self._visitors_cdf, rng.random(n))

    def items(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Items by overall popularity."""
        return _draw(self._items_cdf, rng.random(n))

    def items_in(self, rng: np.random.Generator, categories: np.ndarray) -> np.ndarray:
        """One item from each given category (which must hold items), by popularity within it."""
        shifted = categories + rng.random(len(categories))
        position = np.searchsorted(self._category_shifted_cdf, shifted, side="right")
        # Rounding can carry c + u up to c + 1; stay inside the category.
        return self._items_by_category[np.minimum(position, self._last_position[categories])]

    def taste_categories(self, rng: np.random.Generator, visitors: np.ndarray) -> np.ndarray:
        """One of each visitor's planted tastes, the stronger ones more often."""
        slot = _draw(self._taste_cdf, rng.random(len(visitors)))
        return self.world.visitors.tastes[visitors, slot]


def build_world(config: GeneratorConfig, rng: np.random.Generator) -> World:
    categories = _category_tree(config, rng)
    items = _catalogue(config, categories, rng)
    stocked = np.unique(items.category)  # a taste for an empty category could never be seen
    tastes = stocked[rng.integers(0, len(stocked), (config.n_visitors, config.tastes_per_visitor))]
    taste_share = _TASTE_DECAY ** np.arange(config.tastes_per_visitor)
    # Heavy-tailed but not Zipf: a pure power law would give one visitor a tenth of all sessions.
    activity = rng.lognormal(0.0, 1.0, config.n_visitors)
    visitors = Visitors(
        activity=activity / activity.sum(), tastes=tastes, taste_share=taste_share / taste_share.sum()
    )
    return World(categories=categories, items=items, visitors=visitors)


def _category_tree(config: GeneratorConfig, rng: np.random.Generator) -> CategoryTree:
    low, high = config.children_per_category
    parents = [np.full(config.root_categories, -1)]
    levels = [np.zeros(config.root_categories, dtype=np.int64)]
    level_ids = np.arange(config.root_categories)
    for level in range(1, config.category_levels):
        children = rng.integers(low, high + 1, len(level_ids))
        first_child = level_ids[-1] + 1
        parents.append(np.repeat(level_ids, children))
        levels.append(np.full(children.sum(), level))
        level_ids = np.arange(first_child, first_child + children.sum())
    parent = np.concatenate(parents)
    root = np.arange(len(parent))
    for _ in range(config.category_levels - 1):  # each pass climbs one level
        root = np.where(parent[root] >= 0, parent[root], root)
    return CategoryTree(parent=parent, level=np.concatenate(levels), root=root, name=_names(len(parent), rng))


def _names(n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` distinct pseudo-words, so that a search names exactly one category."""
    length = _MIN_SYLLABLES
    while len(_SYLLABLES) ** length < 4 * n:  # room to spare keeps the draw quick
        length += 1
    codes = rng.choice(len(_SYLLABLES) ** length, size=n, replace=False)
    syllables = _SYLLABLES[codes[:, None] // len(_SYLLABLES) ** np.arange(length) % len(_SYLLABLES)]
    return np.array(["".join(word) for word in syllables], dtype=object)


def _catalogue(config: GeneratorConfig, categories: CategoryTree, rng: np.random.Generator) -> Catalogue:
    n_items = config.n_items
    leaves = categories.leaves
    leaf_share = rng.lognormal(0.0, 1.0, len(leaves))
    category = leaves[_draw(_cdf(leaf_share), rng.random(n_items))]
    rank = rng.permutation(n_items) + 1
    popularity = rank**-config.item_popularity_exponent
    # Each root is a department with its own price level.
    department_price = rng.lognormal(np.log(2_000), 1.0, config.root_categories)
    price = np.maximum(
        1, np.round(department_price[categories.root[category]] * rng.lognormal(0, 0.5, n_items))
    )
    brand_popularity = np.arange(1, config.brands + 1) ** -1.0
    return Catalogue(
        category=category,
        popularity=popularity / popularity.sum(),
        price=price.astype(np.int64),
        brand=_draw(_cdf(brand_popularity), rng.random(n_items)),
        available=rng.random(n_items) < _AVAILABLE_SHARE,
    )


def _cdf(weights: np.ndarray) -> np.ndarray:
    cumulative = np.cumsum(weights, dtype=np.float64)
    return cumulative / cumulative[-1]


def _draw(cdf: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    return np.minimum(np.searchsorted(cdf, uniform, side="right"), len(cdf) - 1)
