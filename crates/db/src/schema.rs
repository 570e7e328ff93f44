// @generated automatically by Diesel CLI.

diesel::table! {
    appointments (id) {
        id -> Uuid,
        org_id -> Uuid,
        host_user_id -> Uuid,
        guest_user_id -> Nullable<Uuid>,
        setter_user_id -> Nullable<Uuid>,
        team_id -> Nullable<Uuid>,
        lead -> Jsonb,
        scheduled_at -> Timestamptz,
        ends_at -> Nullable<Timestamptz>,
        kind -> Text,
        status -> Text,
        version -> Int8,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    dead_letters (id) {
        id -> Uuid,
        consumer -> Text,
        event_id -> Nullable<Uuid>,
        subject -> Text,
        event_type -> Nullable<Text>,
        payload -> Bytea,
        headers -> Jsonb,
        error -> Text,
        deliveries -> Int8,
        stream_sequence -> Int8,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    inbox (consumer, event_id) {
        consumer -> Text,
        event_id -> Uuid,
        processed_at -> Timestamptz,
    }
}

diesel::table! {
    outbox (id) {
        id -> Uuid,
        source -> Text,
        subject -> Text,
        payload -> Bytea,
        headers -> Jsonb,
        created_at -> Timestamptz,
        published_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    webhook_receipts (provider, key) {
        provider -> Text,
        key -> Text,
        received_at -> Timestamptz,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    appointments,
    dead_letters,
    inbox,
    outbox,
    webhook_receipts,
);
