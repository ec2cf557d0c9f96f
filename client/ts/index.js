// Herald's TypeScript client: every message schema, enum and service
// descriptor generated from proto/ (gen/, by `npm run generate`). Call a
// service with @connectrpc/connect's createClient and a transport:
// createGrpcWebTransport from @connectrpc/connect-web in a browser,
// createGrpcTransport from @connectrpc/connect-node in Node.
export * from "./gen/herald/v1/delivery_pb.js";
export * from "./gen/herald/v1/delivery_service_pb.js";
export * from "./gen/herald/v1/destination_pb.js";
export * from "./gen/herald/v1/destination_service_pb.js";
export * from "./gen/herald/v1/endpoint_pb.js";
export * from "./gen/herald/v1/endpoint_service_pb.js";
export * from "./gen/herald/v1/event_service_pb.js";
export * from "./gen/herald/v1/outcome_pb.js";
