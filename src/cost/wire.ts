/**
 * Builds the cost meter of a service: the ledger in the data folder, Home Assistant's time zone, the
 * configured prices and budgets. The ledger is read, and Home Assistant asked for its time zone, once the
 * ingress port listens; conversations started before that wait for the ledger (`CostMeter.admit`).
 */
import type { App } from "../app.js";
import { homeAssistantTimeZone, localTimeZone } from "../ha/time-zone.js";
import { CostLedger } from "./ledger.js";
import { CostMeter } from "./meter.js";
import { PriceTable } from "./prices.js";

export function createCostMeter(app: App, now?: () => number): CostMeter {
  const { config, logger, metrics } = app;
  const log = logger.child({ part: "cost" });
  // Looked up on first use, after listening: checking `TZ` may build a date formatter (about 10 ms).
  let zone: string | undefined;
  const ledger = new CostLedger({
    dataDir: app.dataDir,
    timeZone: () => (zone ??= localTimeZone(app.env)),
    logger: log,
    ...(now ? { now } : {}),
  });
  const c = config.cost;
  const meter = new CostMeter({
    budget: {
      dailyUsd: c.daily_budget_usd,
      deviceDailyUsd: c.device_daily_budget_usd,
      warnPercent: c.warn_percent,
    },
    maxConversationMs: c.max_conversation_minutes * 60_000,
    prices: new PriceTable(c.prices),
    ledger,
    metrics,
    logger: log,
    ...(now ? { now } : {}),
  });
  app.ingress.addHook("onListen", (done) => {
    setImmediate(() => {
      // Starts wait for the ledger, not for Home Assistant's answer (which only moves midnight).
      void meter.load();
      void homeAssistantTimeZone(app.env, log).then((answer) => {
        zone = answer ?? zone ?? localTimeZone(app.env);
        log.debug({ time_zone: zone }, "days of the cost ledger end at local midnight");
      });
    });
    done();
  });
  app.addClosable("cost ledger", () => meter.close());
  return meter;
}
