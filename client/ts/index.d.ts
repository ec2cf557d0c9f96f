// Types of Herald's TypeScript client: see index.js.
export * from "./gen/herald/v1/delivery_pb.js";
export * from "./gen/herald/v1/delivery_service_pb.js";
export * from "./gen/herald/v1/destination_pb.js";
export * from "./gen/herald/v1/destination_service_pb.js";
export * from "./gen/herald/v1/endpoint_pb.js";
export * from "./gen/herald/v1/endpoint_service_pb.js";
export * from "./gen/herald/v1/event_service_pb.js";
export * from "./gen/herald/v1/outcome_pb.js";
