"""The HomeServer: configuration, database, signing key and services, wired together.

Services are created lazily on first use, each from its own module under veche.services.
"""

from __future__ import annotations

import asyncio
import logging
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from veche.config import Config
from veche.notifier import Notifier
from veche.ratelimit import RateLimiter, SharedBuckets
from veche.storage.database import Database, open_database
from veche.storage.sync import store_stream_reservation
from veche.streams import RESERVE_AHEAD, StreamIdGenerator

if TYPE_CHECKING:
    from signedjson.key import SigningKey

    from veche.cluster.node import Cluster
    from veche.cluster.positions import ClusterStreamIdGenerator
    from veche.federation.client import FederationClient
    from veche.services.account_data import AccountDataService
    from veche.services.accounts import AccountService
    from veche.services.admin import AdminService
    from veche.services.admin_content import AdminContent
    from veche.services.admin_rooms import AdminRooms
    from veche.services.admin_users import AdminUsers
    from veche.services.appservices import AppServiceService
    from veche.services.auth import AuthService
    from veche.services.backfill import BackfillService
    from veche.services.dehydrated_devices import DehydratedDeviceService
    from veche.services.device_lists import DeviceListService
    from veche.services.directory import DirectoryService
    from veche.services.e2e_keys import E2eKeysService
    from veche.services.events import EventService
    from veche.services.federation import FederationService
    from veche.services.federation_edus import FederationEdus
    from veche.services.federation_inbound import FederationInbound
    from veche.services.federation_membership import FederationMembershipService
    from veche.services.federation_sender import FederationSender
    from veche.services.federation_serving import FederationServing
    from veche.services.filters import FilterService
    from veche.services.health import HealthService
    from veche.services.media import MediaService
    from veche.services.membership import MembershipService
    from veche.services.openid import OpenIdService
    from veche.services.presence import PresenceService
    from veche.services.push import PushService
    from veche.services.pushers import PusherService
    from veche.services.receipts import ReceiptService
    from veche.services.relations import RelationService
    from veche.services.remote_membership import RemoteMembership
    from veche.services.reports import ReportService
    from veche.services.room_creation import RoomCreationService
    from veche.services.room_keys import RoomKeysService
    from veche.services.room_state import RoomStateService
    from veche.services.rooms import RoomService
    from veche.services.search import SearchService
    from veche.services.server_keys import ServerKeyService
    from veche.services.sliding_sync import SlidingSyncService
    from veche.services.spaces import SpaceService
    from veche.services.sync import SyncService
    from veche.services.timeline import TimelineService
    from veche.services.to_device import ToDeviceService
    from veche.services.typing import TypingService
    from veche.services.user_directory import UserDirectoryService
    from veche.services.visibility import HistoryVisibilityService

logger = logging.getLogger(__name__)

# Tables whose rows carry a position of the server-wide stream, and that position's column.
STREAM_TABLES: dict[str, str] = {"events": "stream_ordering", "stream_reservation": "position"}


def register_stream_table(table: str, column: str = "stream_id") -> None:
    """Modules that add stream-positioned tables call this so positions never repeat."""
    STREAM_TABLES[table] = column


class HomeServer:
    def __init__(self, config: Config, db: Database | None = None) -> None:
        self.config = config
        self.server_name = config.server_name
        self.data_dir = Path(config.data_dir)
        session_name = None
        if config.clustered:
            from veche.cluster.node import session_name as cluster_session_name

            session_name = cluster_session_name(config)
        self.db = db or open_database(
            config.database_url,
            sqlite_synchronous=config.database.sqlite_synchronous,
            pool_size=config.database.pool_size,
            application_name=session_name,
        )
        self.ratelimiter = RateLimiter(config.rate_limits, config.rate_limiting)
        self._background: set[asyncio.Task[Any]] = set()
        # Work a graceful shutdown waits for (events being stored, positions being reserved).
        self._lasting: set[asyncio.Task[Any]] = set()
        # Set on SIGTERM: readiness answers 503 so load balancers stop sending.
        self.stopping = False
        # The veche.metrics module when [metrics] is on (imported only then), else None.
        self.metrics: Any = None
        if config.metrics.enabled:
            from veche import metrics

            self.metrics = metrics
            self.db.on_transaction = metrics.observe_transaction
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # a CLI command, not the server
            self._loop = None
        last = self._max_stream_position()
        self.cluster: Cluster | None = None
        self.stream: StreamIdGenerator | ClusterStreamIdGenerator
        if config.clustered:
            from veche.cluster.node import Cluster

            self.cluster = Cluster(self, last)
            self.stream = self.cluster.stream
            self.ratelimiter.shared = SharedBuckets(
                self.db, self.ratelimiter.shared_refill_s()).take
        else:
            reserved = last + RESERVE_AHEAD
            self.db.run_sync(store_stream_reservation, reserved)  # type: ignore[attr-defined]
            self.stream = StreamIdGenerator(last, reserved, self._extend_reservation)
        self.notifier = Notifier(self.stream)
        # Loaded now, not first inside a send's transaction.
        if config.push.enabled:
            _ = self.pushers
        if config.app_service_config_files:
            _ = self.appservices

    def _extend_reservation(self, upto: int) -> None:
        async def store() -> None:
            try:
                await self.db.run(store_stream_reservation, upto)
            except Exception:
                logger.exception("could not store the stream reservation")
                self.stream.reserved(None)
                return
            if self.stream.reserved(upto):
                self.notifier.notify_all()

        self.run_in_background(store(), lasting=True)

    def _max_stream_position(self) -> int:
        import veche.services  # noqa: F401  (modules register their stream tables on import)
        from veche.services import load_all

        load_all()
        sql = " UNION ALL ".join(
            f"SELECT MAX({col}) FROM {table}" for table, col in STREAM_TABLES.items()
        )

        def read(txn: Any) -> int:
            return max((r[0] or 0) for r in txn.fetchall(sql))

        return self.db.run_sync(read)  # type: ignore[attr-defined,no-any-return]

    @cached_property
    def signing_key(self) -> SigningKey:
        from veche.keys import load_or_create_signing_key

        return load_or_create_signing_key(self.data_dir)

    def call_on_loop(self, fn: Any, *args: Any) -> None:
        """Run fn on the server's event loop; safe from a database thread (PostgreSQL runs
        transactions, and so their commit callbacks, on a thread pool)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(fn, *args)

    def run_in_background(self, coro: Any, *, lasting: bool = False) -> asyncio.Task[Any]:
        """Run coro as a task of its own. `lasting`: a graceful shutdown lets it finish
        (within the grace period) instead of cancelling it."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        if lasting:
            self._lasting.add(task)
            task.add_done_callback(self._lasting.discard)
        return task

    async def finish_lasting(self, timeout: float) -> bool:
        """Wait for the lasting background tasks, new ones included; False if some were still
        running at `timeout`."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self._lasting:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return False
            await asyncio.wait(set(self._lasting), timeout=remaining)
        return True

    # --- services -------------------------------------------------------------------
    @cached_property
    def auth(self) -> AuthService:
        from veche.services.auth import AuthService

        return AuthService(self)

    @cached_property
    def accounts(self) -> AccountService:
        from veche.services.accounts import AccountService

        return AccountService(self)

    @cached_property
    def events(self) -> EventService:
        from veche.services.events import EventService

        return EventService(self)

    @cached_property
    def rooms(self) -> RoomService:
        from veche.services.rooms import RoomService

        return RoomService(self)

    @cached_property
    def visibility(self) -> HistoryVisibilityService:
        from veche.services.visibility import HistoryVisibilityService

        return HistoryVisibilityService(self)

    @cached_property
    def room_creation(self) -> RoomCreationService:
        from veche.services.room_creation import RoomCreationService

        return RoomCreationService(self)

    @cached_property
    def membership(self) -> MembershipService:
        from veche.services.membership import MembershipService

        return MembershipService(self)

    @cached_property
    def room_state(self) -> RoomStateService:
        from veche.services.room_state import RoomStateService

        return RoomStateService(self)

    @cached_property
    def timeline(self) -> TimelineService:
        from veche.services.timeline import TimelineService

        return TimelineService(self)

    @cached_property
    def relations(self) -> RelationService:
        from veche.services.relations import RelationService

        return RelationService(self)

    @cached_property
    def directory(self) -> DirectoryService:
        from veche.services.directory import DirectoryService

        return DirectoryService(self)

    @cached_property
    def sync(self) -> SyncService:
        from veche.services.sync import SyncService

        service = self.__dict__["sync"] = SyncService(self)
        # The services that fill /sync sections register their providers when created.
        _ = self.e2e_keys, self.to_device
        return service

    @cached_property
    def sliding_sync(self) -> SlidingSyncService:
        from veche.services.sliding_sync import SlidingSyncService

        return SlidingSyncService(self)

    @cached_property
    def typing(self) -> TypingService:
        from veche.services.typing import TypingService

        return TypingService(self)

    @cached_property
    def reports(self) -> ReportService:
        from veche.services.reports import ReportService

        return ReportService(self)

    @cached_property
    def admin(self) -> AdminService:
        from veche.services.admin import AdminService

        return AdminService(self)

    @cached_property
    def admin_users(self) -> AdminUsers:
        from veche.services.admin_users import AdminUsers

        return AdminUsers(self)

    @cached_property
    def admin_rooms(self) -> AdminRooms:
        from veche.services.admin_rooms import AdminRooms

        return AdminRooms(self)

    @cached_property
    def admin_content(self) -> AdminContent:
        from veche.services.admin_content import AdminContent

        return AdminContent(self)

    @cached_property
    def health(self) -> HealthService:
        from veche.services.health import HealthService

        return HealthService(self)

    @cached_property
    def filters(self) -> FilterService:
        from veche.services.filters import FilterService

        return FilterService(self)

    @cached_property
    def openid(self) -> OpenIdService:
        from veche.services.openid import OpenIdService

        return OpenIdService(self)

    @cached_property
    def user_directory(self) -> UserDirectoryService:
        from veche.services.user_directory import UserDirectoryService

        return UserDirectoryService(self)

    @cached_property
    def receipts(self) -> ReceiptService:
        from veche.services.receipts import ReceiptService

        return ReceiptService(self)

    @cached_property
    def account_data(self) -> AccountDataService:
        from veche.services.account_data import AccountDataService

        return AccountDataService(self)

    @cached_property
    def push(self) -> PushService:
        from veche.services.push import PushService

        return PushService(self)

    @cached_property
    def appservices(self) -> AppServiceService:
        from veche.services.appservices import AppServiceService

        return AppServiceService(self)

    @cached_property
    def pushers(self) -> PusherService:
        from veche.services.pushers import PusherService

        return PusherService(self)

    @cached_property
    def presence(self) -> PresenceService:
        from veche.services.presence import PresenceService

        return PresenceService(self)

    @cached_property
    def e2e_keys(self) -> E2eKeysService:
        from veche.services.e2e_keys import E2eKeysService

        return E2eKeysService(self)

    @cached_property
    def device_lists(self) -> DeviceListService:
        from veche.services.device_lists import DeviceListService

        return DeviceListService(self)

    @cached_property
    def dehydrated_devices(self) -> DehydratedDeviceService:
        from veche.services.dehydrated_devices import DehydratedDeviceService

        return DehydratedDeviceService(self)

    @cached_property
    def to_device(self) -> ToDeviceService:
        from veche.services.to_device import ToDeviceService

        return ToDeviceService(self)

    @cached_property
    def room_keys(self) -> RoomKeysService:
        from veche.services.room_keys import RoomKeysService

        return RoomKeysService(self)

    @cached_property
    def search(self) -> SearchService:
        from veche.services.search import SearchService

        return SearchService(self)

    @cached_property
    def spaces(self) -> SpaceService:
        from veche.services.spaces import SpaceService

        return SpaceService(self)

    @cached_property
    def media(self) -> MediaService:
        from veche.services.media import MediaService

        return MediaService(self)

    @cached_property
    def server_keys(self) -> ServerKeyService:
        from veche.services.server_keys import ServerKeyService

        return ServerKeyService(self)

    @cached_property
    def federation(self) -> FederationService:
        from veche.services.federation import FederationService

        return FederationService(self)

    @cached_property
    def backfill(self) -> BackfillService:
        from veche.services.backfill import BackfillService

        return BackfillService(self)

    @cached_property
    def federation_inbound(self) -> FederationInbound:
        from veche.services.federation_inbound import FederationInbound

        return FederationInbound(self)

    @cached_property
    def federation_serving(self) -> FederationServing:
        from veche.services.federation_serving import FederationServing

        return FederationServing(self)

    @cached_property
    def federation_edus(self) -> FederationEdus:
        from veche.services.federation_edus import FederationEdus

        return FederationEdus(self)

    @cached_property
    def federation_sender(self) -> FederationSender:
        from veche.services.federation_sender import FederationSender

        return FederationSender(self)

    @cached_property
    def federation_membership(self) -> FederationMembershipService:
        from veche.services.federation_membership import FederationMembershipService

        return FederationMembershipService(self)

    @cached_property
    def remote_membership(self) -> RemoteMembership:
        from veche.services.remote_membership import RemoteMembership

        return RemoteMembership(self)

    @cached_property
    def federation_client(self) -> FederationClient:
        from veche.federation.client import FederationClient

        return FederationClient(self.server_name, self.signing_key, self.config.federation)

    # --- lifecycle --------------------------------------------------------------------
    def make_app(self) -> web.Application:
        from veche.http.app import make_app

        return make_app(self)

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        for name in ("pushers", "appservices", "federation_sender", "federation_client"):
            if name in self.__dict__:
                await self.__dict__[name].close()
        self.db.close()
        if self.cluster is not None:
            await self.cluster.close()
