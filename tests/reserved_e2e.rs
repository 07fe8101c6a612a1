//! A node's name (chosen by whoever owns the device) must never shadow a
//! path the site serves itself: the owned route sits in front of the site.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use e2e::for_each_version;
use e2e::sync::{once, Rig};

/// A site that serves `/api/*`, `/docs/*` and `/old*` itself.
const SITE: &str = r#"
{
	admin {$CADDY_ADMIN}
}
{$TART_SITE} {
	handle /api/* {
		respond "site api" 200
	}
	handle_path /docs/* {
		respond "site docs" 200
	}
	redir /old* /new 302
	respond "No TART here." 404
}
"#;

#[tokio::test]
async fn names_of_the_sites_own_paths_and_reserved_names_are_never_published() {
    for_each_version(|v| async move {
        let names = ["api", "docs", "older", "admin", "rhodes"];
        let rig = Rig::start_with(v, &names, SITE).await.unwrap();
        rig.hs.set_nodes(&rig.nodes()).await;
        let settings = rig.settings(&[("TART_SYNC_ROUTES_RESERVED", "admin")]);
        assert!(once(settings.clone()).await, "{v:?}: sync");
        // The site keeps its own paths; the TART named like one gets no URL.
        assert_eq!(rig.get("/api/x").await, (200, "site api".into()), "{v:?}");
        assert_eq!(rig.get("/docs/x").await, (200, "site docs".into()), "{v:?}");
        let (status, location) = rig.get("/older").await;
        assert_eq!((status, location.as_str()), (302, "location=/new"), "{v:?}");
        assert_eq!(
            rig.who("/admin/").await,
            "404",
            "{v:?}: reserved by the setting"
        );
        assert_eq!(rig.who("/rhodes/").await, "rhodes", "{v:?}");
        // The skip and its reason are visible (plan and the status page show these).
        let hs = tart_sync::headscale::HeadscaleClient::from_settings(&settings.headscale).unwrap();
        let ctx = tart_sync::context::Context::new(settings);
        let insts = tart_sync::controller::instances(&ctx.settings).unwrap();
        tart_sync::controller::learn_site_rules(&ctx, &insts).await;
        let desired = tart_sync::controller::poll(&ctx, &hs).await.unwrap();
        let reason = |name: &str| {
            desired
                .skipped
                .iter()
                .find(|s| s.name.ends_with(name))
                .map(|s| s.reason.clone())
                .unwrap_or_default()
        };
        assert!(
            reason("api").contains("/api/*"),
            "{v:?}: {:?}",
            desired.skipped
        );
        assert!(reason("docs").contains("/docs/*"), "{:?}", desired.skipped);
        assert!(reason("older").contains("/old*"), "{:?}", desired.skipped);
        assert!(
            reason("admin").contains("routes.reserved"),
            "{:?}",
            desired.skipped
        );
        assert_eq!(desired.entries.len(), 1);
    })
    .await;
}
