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
    monitoring_audit (id) {
        id -> Uuid,
        org_id -> Uuid,
        session_id -> Nullable<Uuid>,
        actor_id -> Nullable<Uuid>,
        rep_id -> Uuid,
        action -> Text,
        mode -> Text,
        detail -> Nullable<Text>,
        ip -> Nullable<Text>,
        at -> Timestamptz,
        target -> Nullable<Text>,
    }
}

diesel::table! {
    monitoring_rep_calls (rep_id, kind, call_id) {
        rep_id -> Uuid,
        org_id -> Uuid,
        kind -> Text,
        call_id -> Uuid,
        started_at -> Nullable<Timestamptz>,
        ended_at -> Nullable<Timestamptz>,
        room_name -> Nullable<Text>,
    }
}

diesel::table! {
    monitoring_rep_connections (rep_id, sid) {
        rep_id -> Uuid,
        sid -> Text,
        joined_at -> Nullable<Timestamptz>,
        left_at -> Nullable<Timestamptz>,
        left_source -> Nullable<Text>,
    }
}

diesel::table! {
    monitoring_rep_tracks (rep_id, track_sid) {
        rep_id -> Uuid,
        track_sid -> Text,
        sid -> Text,
        published_at -> Nullable<Timestamptz>,
        unpublished_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    monitoring_reps (user_id) {
        user_id -> Uuid,
        org_id -> Uuid,
        role -> Text,
        teams -> Array<Nullable<Uuid>>,
        name -> Text,
        room_name -> Text,
        status -> Text,
        publishing -> Bool,
        status_changed_at -> Timestamptz,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        crm_version -> Nullable<Int8>,
        left_roster_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    monitoring_sessions (id) {
        id -> Uuid,
        org_id -> Uuid,
        rep_id -> Uuid,
        supervisor_id -> Uuid,
        supervisor_role -> Text,
        room_name -> Nullable<Text>,
        identity -> Text,
        status -> Text,
        mode -> Text,
        started_at -> Timestamptz,
        stopped_at -> Nullable<Timestamptz>,
        stop_reason -> Nullable<Text>,
        token_expires_at -> Timestamptz,
        updated_at -> Timestamptz,
        target -> Text,
        call_id -> Nullable<Uuid>,
        supervisor_address -> Nullable<Text>,
    }
}

diesel::table! {
    monitoring_settings (org_id) {
        org_id -> Uuid,
        notify_rep -> Bool,
        allow_coach -> Bool,
        allow_barge -> Bool,
        max_supervisors_per_rep -> Int4,
        updated_by -> Nullable<Uuid>,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    monitoring_stream_tickets (ticket_hash) {
        ticket_hash -> Bytea,
        user_id -> Uuid,
        org_id -> Uuid,
        role -> Text,
        teams -> Array<Nullable<Uuid>>,
        token_expires_at -> Timestamptz,
        expires_at -> Timestamptz,
        created_at -> Timestamptz,
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
    recording_access_audit (id) {
        id -> Uuid,
        org_id -> Uuid,
        service -> Text,
        recording_id -> Uuid,
        call_id -> Uuid,
        user_id -> Nullable<Uuid>,
        action -> Text,
        byte_range -> Nullable<Text>,
        at -> Timestamptz,
    }
}

diesel::table! {
    signaling_rooms (id) {
        id -> Uuid,
        org_id -> Uuid,
        room_id -> Text,
        appointment_id -> Uuid,
        status -> Text,
        practitioner_joined -> Bool,
        patient_joined -> Bool,
        started_at -> Nullable<Timestamptz>,
        ended_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        practitioner_name -> Nullable<Text>,
    }
}

diesel::table! {
    telephony_call_quality (id) {
        id -> Uuid,
        org_id -> Uuid,
        call_id -> Uuid,
        source -> Text,
        jitter_ms -> Nullable<Float8>,
        latency_ms -> Nullable<Float8>,
        packet_loss_percent -> Nullable<Float8>,
        mos -> Nullable<Float8>,
        mos_estimated -> Bool,
        codec -> Nullable<Text>,
        measured_at -> Timestamptz,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    telephony_calls (id) {
        id -> Uuid,
        org_id -> Uuid,
        user_id -> Nullable<Uuid>,
        team_id -> Nullable<Uuid>,
        phone_number_id -> Nullable<Uuid>,
        appointment_id -> Nullable<Uuid>,
        direction -> Text,
        call_sid -> Nullable<Text>,
        from_number -> Text,
        to_number -> Text,
        status -> Text,
        status_sequence -> Nullable<Int4>,
        initiated_at -> Nullable<Timestamptz>,
        ringing_at -> Nullable<Timestamptz>,
        answered_at -> Nullable<Timestamptz>,
        ended_at -> Nullable<Timestamptz>,
        duration_seconds -> Nullable<Int4>,
        dial_status -> Nullable<Text>,
        talk_seconds -> Nullable<Int4>,
        voicemail -> Bool,
        record -> Bool,
        price -> Nullable<Text>,
        price_unit -> Nullable<Text>,
        quality_degraded_at -> Nullable<Timestamptz>,
        synced_at -> Nullable<Timestamptz>,
        error_code -> Nullable<Int4>,
        error_message -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    telephony_conference_participants (call_sid) {
        call_sid -> Text,
        call_id -> Uuid,
        org_id -> Uuid,
        role -> Text,
        session_id -> Nullable<Uuid>,
        status -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    telephony_conferences (call_id) {
        call_id -> Uuid,
        org_id -> Uuid,
        conference_sid -> Nullable<Text>,
        status -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    telephony_followups (call_id, kind) {
        call_id -> Uuid,
        kind -> Text,
        status -> Text,
        attempts -> Int4,
        next_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    telephony_phone_numbers (id) {
        id -> Uuid,
        org_id -> Uuid,
        e164 -> Text,
        owner_user_id -> Nullable<Uuid>,
        team_id -> Nullable<Uuid>,
        ring_app -> Bool,
        forward_to -> Nullable<Text>,
        greeting -> Nullable<Text>,
        voicemail_greeting -> Nullable<Text>,
        language -> Text,
        voice -> Text,
        ring_timeout_seconds -> Int4,
        record_calls -> Bool,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    telephony_recordings (id) {
        id -> Uuid,
        org_id -> Uuid,
        call_id -> Uuid,
        recording_sid -> Text,
        kind -> Text,
        status -> Text,
        url -> Nullable<Text>,
        duration_seconds -> Nullable<Int4>,
        channels -> Nullable<Int4>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        deleted_at -> Nullable<Timestamptz>,
        transcription -> Nullable<Text>,
        transcription_status -> Nullable<Text>,
    }
}

diesel::table! {
    telephony_supervisions (session_id) {
        session_id -> Uuid,
        org_id -> Uuid,
        call_id -> Nullable<Uuid>,
        supervisor_user_id -> Nullable<Uuid>,
        mode -> Text,
        status -> Text,
        participant_call_sid -> Nullable<Text>,
        reason -> Nullable<Text>,
        mode_at -> Timestamptz,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    video_call_participants (id) {
        id -> Uuid,
        call_id -> Uuid,
        org_id -> Uuid,
        user_id -> Nullable<Uuid>,
        identity -> Text,
        role -> Text,
        display_name -> Text,
        is_host -> Bool,
        is_guest -> Bool,
        active -> Bool,
        joined_at -> Nullable<Timestamptz>,
        left_at -> Nullable<Timestamptz>,
        total_seconds -> Int4,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    video_calls (id) {
        id -> Uuid,
        org_id -> Uuid,
        appointment_id -> Uuid,
        room_name -> Text,
        status -> Text,
        room_created -> Bool,
        started_at -> Nullable<Timestamptz>,
        ended_at -> Nullable<Timestamptz>,
        duration_seconds -> Nullable<Int4>,
        end_reason -> Nullable<Text>,
        recording_status -> Text,
        recording_url -> Nullable<Text>,
        recording_data -> Nullable<Jsonb>,
        room_finished_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        segment_started_at -> Nullable<Timestamptz>,
        earlier_segments_seconds -> Int4,
        resumed_count -> Int4,
    }
}

diesel::table! {
    video_lobby_guests (id) {
        id -> Uuid,
        call_id -> Uuid,
        org_id -> Uuid,
        link_id -> Uuid,
        display_name -> Text,
        status -> Text,
        decided_by -> Nullable<Uuid>,
        decided_at -> Nullable<Timestamptz>,
        expires_at -> Timestamptz,
        created_at -> Timestamptz,
        device_secret_sha256 -> Nullable<Bytea>,
    }
}

diesel::table! {
    video_meeting_members (meeting_id, user_id) {
        meeting_id -> Uuid,
        user_id -> Uuid,
        role -> Text,
        joined_at -> Nullable<Timestamptz>,
        left_at -> Nullable<Timestamptz>,
        in_room -> Bool,
    }
}

diesel::table! {
    video_meetings (id) {
        id -> Uuid,
        org_id -> Uuid,
        room_name -> Text,
        livekit_room -> Text,
        created_by -> Uuid,
        call_type -> Text,
        mode -> Text,
        status -> Text,
        created_at -> Timestamptz,
        ended_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    video_participant_sessions (call_id, sid) {
        call_id -> Uuid,
        sid -> Text,
        identity -> Text,
        joined_at -> Nullable<Timestamptz>,
        left_at -> Nullable<Timestamptz>,
        left_source -> Nullable<Text>,
    }
}

diesel::table! {
    video_recordings (id) {
        id -> Uuid,
        call_id -> Uuid,
        org_id -> Uuid,
        egress_id -> Text,
        status -> Text,
        filepath -> Text,
        location -> Nullable<Text>,
        duration_seconds -> Nullable<Int8>,
        size_bytes -> Nullable<Int8>,
        error -> Nullable<Text>,
        started_at -> Timestamptz,
        ended_at -> Nullable<Timestamptz>,
        updated_at -> Timestamptz,
        deleted_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    webhook_receipts (provider, key) {
        provider -> Text,
        key -> Text,
        received_at -> Timestamptz,
    }
}

diesel::joinable!(monitoring_rep_connections -> monitoring_reps (rep_id));
diesel::joinable!(monitoring_rep_tracks -> monitoring_reps (rep_id));
diesel::joinable!(monitoring_sessions -> monitoring_reps (rep_id));
diesel::joinable!(signaling_rooms -> appointments (appointment_id));
diesel::joinable!(telephony_call_quality -> telephony_calls (call_id));
diesel::joinable!(telephony_calls -> telephony_phone_numbers (phone_number_id));
diesel::joinable!(telephony_conference_participants -> telephony_calls (call_id));
diesel::joinable!(telephony_conferences -> telephony_calls (call_id));
diesel::joinable!(telephony_followups -> telephony_calls (call_id));
diesel::joinable!(telephony_recordings -> telephony_calls (call_id));
diesel::joinable!(video_call_participants -> video_calls (call_id));
diesel::joinable!(video_lobby_guests -> video_calls (call_id));
diesel::joinable!(video_meeting_members -> video_meetings (meeting_id));
diesel::joinable!(video_participant_sessions -> video_calls (call_id));
diesel::joinable!(video_recordings -> video_calls (call_id));

diesel::allow_tables_to_appear_in_same_query!(
    appointments,
    dead_letters,
    inbox,
    monitoring_audit,
    monitoring_rep_calls,
    monitoring_rep_connections,
    monitoring_rep_tracks,
    monitoring_reps,
    monitoring_sessions,
    monitoring_settings,
    monitoring_stream_tickets,
    outbox,
    recording_access_audit,
    signaling_rooms,
    telephony_call_quality,
    telephony_calls,
    telephony_conference_participants,
    telephony_conferences,
    telephony_followups,
    telephony_phone_numbers,
    telephony_recordings,
    telephony_supervisions,
    video_call_participants,
    video_calls,
    video_lobby_guests,
    video_meeting_members,
    video_meetings,
    video_participant_sessions,
    video_recordings,
    webhook_receipts,
);
