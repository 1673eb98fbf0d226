//! The `Mailer` port as a folder: each email becomes one `.eml` file that any mail client
//! opens, named so that a listing sorts in sending order.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use crate::adapters::mime;
use crate::ports::mailer::{Email, MailError, Mailer};
use crate::ports::{Clock, Ids};

pub struct FolderMailer {
    folder: PathBuf,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn Ids>,
}

impl FolderMailer {
    pub fn new(folder: PathBuf, clock: Arc<dyn Clock>, ids: Arc<dyn Ids>) -> Self {
        Self { folder, clock, ids }
    }

    pub fn folder(&self) -> &std::path::Path {
        &self.folder
    }
}

#[async_trait]
impl Mailer for FolderMailer {
    async fn send(&self, email: &Email) -> Result<String, MailError> {
        email.validate()?;
        let id = self.ids.new_id("mail");
        let raw = mime::render(email, &format!("{id}@local"), self.clock.now())?;
        tokio::fs::create_dir_all(&self.folder).await.map_err(MailError::unavailable)?;
        // Write beside, then rename, so a reader never sees half a message.
        let target = self.folder.join(format!("{id}.eml"));
        let partial = self.folder.join(format!(".{id}.partial"));
        tokio::fs::write(&partial, raw).await.map_err(MailError::unavailable)?;
        tokio::fs::rename(&partial, &target).await.map_err(MailError::unavailable)?;
        Ok(id)
    }
}
