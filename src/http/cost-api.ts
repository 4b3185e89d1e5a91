/**
 * The cost part of the admin API (behind ingress):
 * - `GET  /api/cost`                 today's spend (`CostReport`); what it shows is on disk already;
 * - `GET  /api/cost/recent?device=&route=`  that device's last priced items (the talk page's lines);
 * - `POST /api/cost/allow {usd, device?, route?}`  allows that much more today, for all devices or one.
 */
import type { FastifyInstance } from "fastify";
import { z } from "zod";
import { DEVICE_ROUTES, type DeviceRef } from "../cost/budget.js";
import type { CostMeter } from "../cost/meter.js";
import { ApiError } from "../errors.js";
import type { Logger } from "../log.js";

const AllowBody = z.object({
  usd: z.number().finite().positive().max(100_000),
  device: z.string().min(1).max(200).optional(),
  route: z.enum(DEVICE_ROUTES).optional(),
});
const DeviceQuery = z.object({ device: z.string().min(1).max(200), route: z.enum(DEVICE_ROUTES) });

function parse<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  throw new ApiError(
    "bad_request",
    `${what}: ${r.error.issues.map((i) => `${i.path.join(".")} ${i.message}`).join("; ")}`,
  );
}

export function registerCostApi(app: FastifyInstance, cost: CostMeter, log: Logger): void {
  app.get("/api/cost", () => cost.report());

  app.get("/api/cost/recent", (request) => {
    const q = parse(DeviceQuery, request.query, "query");
    return { items: cost.recent({ id: q.device, route: q.route }) };
  });

  app.post("/api/cost/allow", async (request) => {
    const body = parse(AllowBody, request.body, "body");
    const report = await cost.report();
    let device: DeviceRef | undefined;
    if (body.device !== undefined) {
      if (report.device_budget_usd === null) throw new ApiError("no_budget");
      device = { id: body.device, route: body.route ?? "v1" };
    } else if (report.budget_usd === null) throw new ApiError("no_budget");
    cost.allow(body.usd, device);
    log.info({ usd: body.usd, device: body.device }, "more voice budget allowed in the UI");
    return cost.report();
  });
}
