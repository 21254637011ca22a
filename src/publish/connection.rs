//! A session's connection and channel: connect with confirms on and the topology declared, and
//! close them, each broker call under the time-out.

use lapin::options::ConfirmSelectOptions;
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection, ConnectionProperties};

use super::{amqp, bounded, topology, PublishError, Publisher, CONNECTION_NAME};
use crate::config::AmqpUrl;

/// The frame size proposed to the broker unless the URL sets one: a webhook body fits in one frame
/// (and a larger one in a few), and lapin's buffers are 32 frames each.
const FRAME_MAX: u32 = 32 * 1024;

impl Publisher {
    pub(super) async fn connect(
        &self,
        url: &AmqpUrl,
    ) -> Result<(Connection, Channel), PublishError> {
        let limit = self.settings.timeout;
        let properties =
            ConnectionProperties::default().with_connection_name(CONNECTION_NAME.into());
        let mut uri: AMQPUri = url
            .expose()
            .parse()
            .map_err(|e: String| amqp("connect")(lapin::Error::from(std::io::Error::other(e))))?;
        // lapin keeps two buffers of 32 frames each, zero-filled when the connection is tuned,
        // so resident from the start: at RabbitMQ's default frame_max (128 KiB) that is 8 MiB
        // per connection for bodies of a few KiB. A URL's own `?frame_max=` still wins.
        uri.query.frame_max.get_or_insert(FRAME_MAX);
        let conn = bounded(limit, "connect", Connection::connect_uri(uri, properties)).await?;
        let channel = bounded(limit, "channel.open", conn.create_channel()).await?;
        bounded(
            limit,
            "confirm.select",
            channel.confirm_select(ConfirmSelectOptions::default()),
        )
        .await?;
        if self.settings.declare_topology {
            bounded(
                limit,
                "topology declare",
                topology::declare(&channel, &self.settings),
            )
            .await?;
        } else {
            bounded(
                limit,
                "exchange check",
                topology::check_exchange(&channel, &self.settings),
            )
            .await?;
        }
        Ok((conn, channel))
    }

    pub(super) async fn close(&self, conn: Connection, channel: Channel) {
        let limit = self.settings.timeout;
        if let Err(e) = bounded(
            limit,
            "channel.close",
            channel.close(200, "shutdown".into()),
        )
        .await
        {
            tracing::debug!(error = %e, "closing the channel");
        }
        if let Err(e) = bounded(
            limit,
            "connection.close",
            conn.close(200, "shutdown".into()),
        )
        .await
        {
            tracing::debug!(error = %e, "closing the connection");
        }
    }
}
