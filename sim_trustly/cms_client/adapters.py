"""How TPAS talks to a merchant's CMS: pick the merchant's partner profile, build its adapter
once per process, and hand it out.

TPAS calls `adapter_for(ctx, merchant_id)` and then only the CmsAdapter methods; which API is
behind them (the reference one, or a partner's through `adapter = "module:Class"`) is the
profile's business. The types live in `protocol` and are re-exported here. The adapters
built are kept on the context (`TrustlyContext.adapters`, an `AdapterCache`), as the
signing keyring is, and closed with it (`TrustlyContext.close`).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import httpx

from sim_trustly.cms_client.http_client import InProcessTransport, make_http_client
from sim_trustly.cms_client.partner_profiles import CmsProfile, load_adapter_class
from sim_trustly.cms_client.protocol import CmsAdapter, FundingCall, FundingResult, LimitResult
from sim_trustly.cms_client.reference_adapter import ReferenceAdapter
from sim_trustly.settings import TrustlySettings
from simkit.clock import Clock

if TYPE_CHECKING:  # the context holds an AdapterCache, so it imports this module
    from sim_trustly.context import TrustlyContext

__all__ = [
    "AdapterCache", "CmsAdapter", "FundingCall", "FundingResult", "InProcessTransport",
    "LimitResult", "adapter_for", "build_adapter", "close_adapters", "make_http_client",
    "profile_for",
]


def profile_for(settings: TrustlySettings, merchant_id: str) -> CmsProfile:
    """The merchant's own profile, or the default one (timeouts and retries TPAS uses too)."""
    return settings.cms_profiles.get(merchant_id, settings.cms)


def build_adapter(profile: CmsProfile, transport: httpx.BaseTransport | None = None, *,
                  clock: Clock | None = None) -> CmsAdapter:
    """A new adapter for `profile` (no caching): the reference one or the profile's class.

    A partner class is built as `Class(profile, transport)`; `clock` only serves the
    reference adapter's token refresh.
    """
    if profile.adapter is None:
        return ReferenceAdapter(profile, transport, clock=clock)
    adapter: CmsAdapter = load_adapter_class(profile.adapter)(profile, transport)
    return adapter


class AdapterCache:
    """The adapters of one TrustlyContext, one per profile, built on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._adapters: dict[CmsProfile, CmsAdapter] = {}

    def get(self, ctx: TrustlyContext, profile: CmsProfile) -> CmsAdapter:
        with self._lock:
            adapter = self._adapters.get(profile)
            if adapter is None:
                adapter = build_adapter(profile, ctx.cms_transport, clock=ctx.clock)
                self._adapters[profile] = adapter
            return adapter

    def close(self) -> None:
        """Close the adapters built so far (their connection pools); later use builds anew."""
        with self._lock:
            adapters, self._adapters = list(self._adapters.values()), {}
        for adapter in adapters:
            _close(adapter)


def _close(adapter: Any) -> None:
    close = getattr(adapter, "close", None)
    if callable(close):
        close()


def adapter_for(ctx: TrustlyContext, merchant_id: str) -> CmsAdapter:
    """The adapter for the merchant's CMS, shared by every thread of this process.

    Merchants without a profile of their own share the default profile's adapter, hence its
    HTTP connections and its OAuth2 token. `ctx.cms_transport`, when set, carries every
    request (in-process CMSs in tests and the embedded harness).
    """
    return ctx.adapters.get(ctx, profile_for(ctx.settings, merchant_id))


def close_adapters(ctx: TrustlyContext) -> None:
    """Close the context's adapters (their connection pools); later calls build new ones."""
    ctx.adapters.close()
